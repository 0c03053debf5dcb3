// Package certrotation keeps a webhook's serving certificate without
// cert-manager: it makes a CA and a serving certificate, stores them in one
// Secret so that every replica serves the same certificate, renews the
// certificate when a third of its life is left, rolls the CA over with an
// overlap (the old CA stays in the bundle until it expires), serves the
// current certificate from memory through tls.Config.GetCertificate, and
// writes the CA bundle into a MutatingWebhookConfiguration.
//
// It is a manager runnable, not a reconciler: it waits on a clock timer
// between passes. It must not touch any object but its Secret and its one
// webhook configuration, and it never deletes either.
package certrotation

package gateway

import (
	"context"
	"net/http"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/infera-io/temper/internal/kubeauth"
)

// Group is the API group of the resources the gateway authorizes against.
const Group = "infera.io"

// Attributes is what one call asks permission for: a verb on an infera.io
// resource, like a kube-apiserver request.
type Attributes struct {
	Verb        string
	Resource    string
	Subresource string
	Namespace   string
	Name        string
}

func (a Attributes) String() string {
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	s := a.Verb + " " + r + "." + Group
	if a.Namespace != "" {
		s += " in namespace " + a.Namespace
	}
	if a.Name != "" {
		s += " named " + a.Name
	}
	return s
}

// ErrUnauthenticated: no bearer token or the API server rejected it.
var ErrUnauthenticated = kubeauth.ErrUnauthenticated

// Auth authenticates bearer tokens with TokenReview and authorizes
// Attributes with SubjectAccessReview, the way the kubelet and
// kube-rbac-proxy do, caching answers for a short TTL (internal/kubeauth,
// which the agents use too).
type Auth struct {
	rv *kubeauth.Reviewer
}

// NewAuth returns an Auth that reviews with client (the gateway's own
// identity, which needs create on tokenreviews and subjectaccessreviews),
// keeping every answer, positive or negative, for ttl.
func NewAuth(client kubernetes.Interface, ttl time.Duration) *Auth {
	return &Auth{rv: kubeauth.New(client, kubeauth.Options{
		AuthnTTL: ttl, AuthnDeniedTTL: ttl, AllowTTL: ttl, DenyTTL: ttl, MaxEntries: 16384})}
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, error) {
	return kubeauth.BearerToken(r.Header.Get("Authorization"))
}

// Authenticate returns the user the token belongs to. A rejected token is
// ErrUnauthenticated; a failed review is another error.
func (a *Auth) Authenticate(ctx context.Context, token string) (*authnv1.UserInfo, error) {
	return a.rv.Authenticate(ctx, token)
}

// Authorize asks the API server whether user may do attrs.
func (a *Auth) Authorize(ctx context.Context, u *authnv1.UserInfo, attrs Attributes) (bool, string, error) {
	d, err := a.rv.Authorize(ctx, u, kubeauth.Attributes{Verb: attrs.Verb, Group: Group, Resource: attrs.Resource,
		Subresource: attrs.Subresource, Namespace: attrs.Namespace, Name: attrs.Name})
	return d.Allowed, d.Reason, err
}

type userKey struct{}

func withUser(ctx context.Context, u *authnv1.UserInfo) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFrom returns the authenticated caller of a request context.
func UserFrom(ctx context.Context) (*authnv1.UserInfo, bool) {
	u, ok := ctx.Value(userKey{}).(*authnv1.UserInfo)
	return u, ok && u != nil
}

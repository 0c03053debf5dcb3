package kubeauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Cache lifetimes of Options; the kubelet's webhook authenticator and
// authorizer use the same (--authentication-token-webhook-cache-ttl 2m,
// --authorization-webhook-cache-authorized-ttl 5m, -unauthorized-ttl 30s).
const (
	DefaultAuthnTTL       = 2 * time.Minute
	DefaultAuthnDeniedTTL = 10 * time.Second
	DefaultAllowTTL       = 5 * time.Minute
	DefaultDenyTTL        = 30 * time.Second
	defaultMaxEntries     = 4096
)

// ErrUnauthenticated: no usable bearer token, or the API server rejected it.
var ErrUnauthenticated = errors.New("unauthenticated")

// Attributes is what a request asks permission for: a verb on a resource
// (Resource set) or on a non-resource URL (Path set), as in a
// SubjectAccessReview.
type Attributes struct {
	Verb        string
	Group       string
	Resource    string
	Subresource string
	Namespace   string
	Name        string
	// Path is a non-resource URL such as "/metrics"; used when Resource is
	// empty.
	Path string
}

func (a Attributes) String() string {
	if a.Resource == "" {
		return a.Verb + " " + a.Path
	}
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	if a.Group != "" {
		r += "." + a.Group
	}
	s := a.Verb + " " + r
	if a.Namespace != "" {
		s += " in namespace " + a.Namespace
	}
	if a.Name != "" {
		s += " named " + a.Name
	}
	return s
}

func (a Attributes) key() string {
	return strings.Join([]string{a.Verb, a.Group, a.Resource, a.Subresource, a.Namespace, a.Name, a.Path}, "\x00")
}

// Options tune a Reviewer; zero values take the defaults above.
type Options struct {
	AuthnTTL       time.Duration
	AuthnDeniedTTL time.Duration
	AllowTTL       time.Duration
	DenyTTL        time.Duration
	// MaxEntries bounds each cache (tokens, decisions).
	MaxEntries int
	// Audiences, when set, are the TokenReview audiences a token must be
	// valid for.
	Audiences []string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Reviewer asks the API server who a token is and what it may do, as the
// identity of its client (which needs create on tokenreviews and
// subjectaccessreviews).
type Reviewer struct {
	client kubernetes.Interface
	o      Options
	users  *ttlCache[*authnv1.UserInfo]
	allows *ttlCache[Decision]

	tokenReviews, accessReviews atomic.Int64
}

// Decision is a SubjectAccessReview's answer.
type Decision struct {
	Allowed bool
	Reason  string
}

// New returns a Reviewer that reviews with client.
func New(client kubernetes.Interface, o Options) *Reviewer {
	if o.AuthnTTL <= 0 {
		o.AuthnTTL = DefaultAuthnTTL
	}
	if o.AuthnDeniedTTL <= 0 {
		o.AuthnDeniedTTL = DefaultAuthnDeniedTTL
	}
	if o.AllowTTL <= 0 {
		o.AllowTTL = DefaultAllowTTL
	}
	if o.DenyTTL <= 0 {
		o.DenyTTL = DefaultDenyTTL
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = defaultMaxEntries
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Reviewer{client: client, o: o,
		users: newTTLCache[*authnv1.UserInfo](o.MaxEntries), allows: newTTLCache[Decision](o.MaxEntries)}
}

// Reviews returns how many TokenReviews and SubjectAccessReviews this
// Reviewer has sent (cache misses).
func (r *Reviewer) Reviews() (tokenReviews, accessReviews int64) {
	return r.tokenReviews.Load(), r.accessReviews.Load()
}

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header value.
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", fmt.Errorf("%w: no Authorization header; send 'Authorization: Bearer <Kubernetes token>'", ErrUnauthenticated)
	}
	scheme, tok, ok := strings.Cut(header, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", fmt.Errorf("%w: the Authorization header is not 'Bearer <token>'", ErrUnauthenticated)
	}
	return tok, nil
}

// Authenticate returns the user a token belongs to. A token the API server
// rejects is ErrUnauthenticated; a review that could not be made is another
// error (the caller should answer 503, not 401).
func (r *Reviewer) Authenticate(ctx context.Context, token string) (*authnv1.UserInfo, error) {
	sum := sha256.Sum256([]byte(token))
	key := string(sum[:])
	now := r.o.Now()
	if u, ok := r.users.get(key, now); ok {
		if u == nil {
			return nil, fmt.Errorf("%w: the token was not accepted by the API server", ErrUnauthenticated)
		}
		return u, nil
	}
	r.tokenReviews.Add(1)
	tr, err := r.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: r.o.Audiences}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to create TokenReview: %w", err)
	}
	if !tr.Status.Authenticated {
		r.users.put(key, nil, now.Add(r.o.AuthnDeniedTTL), now)
		msg := "the token was not accepted by the API server"
		if tr.Status.Error != "" {
			msg += ": " + tr.Status.Error
		}
		return nil, fmt.Errorf("%w: %s", ErrUnauthenticated, msg)
	}
	u := tr.Status.User
	r.users.put(key, &u, now.Add(r.o.AuthnTTL), now)
	return &u, nil
}

// Authorize asks the API server whether u may do attrs.
func (r *Reviewer) Authorize(ctx context.Context, u *authnv1.UserInfo, attrs Attributes) (Decision, error) {
	key := u.Username + "\x00" + u.UID + "\x00" + strings.Join(u.Groups, "\x01") + "\x00" + attrs.key()
	now := r.o.Now()
	if d, ok := r.allows.get(key, now); ok {
		return d, nil
	}
	extra := make(map[string]authzv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	spec := authzv1.SubjectAccessReviewSpec{User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra}
	if attrs.Resource != "" {
		spec.ResourceAttributes = &authzv1.ResourceAttributes{Group: attrs.Group, Verb: attrs.Verb, Resource: attrs.Resource,
			Subresource: attrs.Subresource, Namespace: attrs.Namespace, Name: attrs.Name}
	} else {
		spec.NonResourceAttributes = &authzv1.NonResourceAttributes{Path: attrs.Path, Verb: attrs.Verb}
	}
	r.accessReviews.Add(1)
	res, err := r.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return Decision{}, fmt.Errorf("failed to create SubjectAccessReview: %w", err)
	}
	d := Decision{Allowed: res.Status.Allowed && !res.Status.Denied, Reason: res.Status.Reason}
	ttl := r.o.AllowTTL
	if !d.Allowed {
		ttl = r.o.DenyTTL
	}
	r.allows.put(key, d, now.Add(ttl), now)
	return d, nil
}

// Check authenticates the Authorization header and authorizes attrs: nil
// when allowed, otherwise an *Error saying what to answer.
func (r *Reviewer) Check(ctx context.Context, header string, attrs Attributes) (*authnv1.UserInfo, error) {
	tok, err := BearerToken(header)
	if err != nil {
		return nil, &Error{Code: CodeUnauthenticated, Err: err}
	}
	u, err := r.Authenticate(ctx, tok)
	if err != nil {
		code := CodeUnavailable
		if errors.Is(err, ErrUnauthenticated) {
			code = CodeUnauthenticated
		}
		return nil, &Error{Code: code, Err: err}
	}
	d, err := r.Authorize(ctx, u, attrs)
	if err != nil {
		return u, &Error{Code: CodeUnavailable, Err: err}
	}
	if !d.Allowed {
		msg := fmt.Sprintf("user %q cannot %s", u.Username, attrs)
		if d.Reason != "" {
			msg += ": " + d.Reason
		}
		return u, &Error{Code: CodeForbidden, Err: errors.New(msg)}
	}
	return u, nil
}

// Code classifies a failed Check.
type Code int

// Codes of Error.
const (
	// CodeUnauthenticated: 401 / gRPC Unauthenticated.
	CodeUnauthenticated Code = iota + 1
	// CodeForbidden: 403 / gRPC PermissionDenied.
	CodeForbidden
	// CodeUnavailable: the review could not be made; 503 / gRPC Unavailable.
	CodeUnavailable
)

// Error is a failed Check.
type Error struct {
	Code Code
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ttlCache is a bounded map with expiring entries. When full, expired
// entries go first, then everything (a simple, bounded reset).
type ttlCache[V any] struct {
	mu  sync.Mutex
	max int
	m   map[string]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

func newTTLCache[V any](maxEntries int) *ttlCache[V] {
	return &ttlCache[V]{max: maxEntries, m: make(map[string]ttlEntry[V])}
}

func (c *ttlCache[V]) get(k string, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) put(k string, v V, expires, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for key, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, key)
			}
		}
		if len(c.m) >= c.max {
			clear(c.m)
		}
	}
	c.m[k] = ttlEntry[V]{v: v, expires: expires}
}

// Loopback reports whether a listen address binds only a loopback interface
// ("localhost:9100", "127.0.0.1:9100", "[::1]:9100"); ":9100" binds all.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

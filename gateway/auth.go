package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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
var ErrUnauthenticated = errors.New("unauthenticated")

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

func newTTLCache[V any](max int) *ttlCache[V] {
	return &ttlCache[V]{max: max, m: make(map[string]ttlEntry[V])}
}

func (c *ttlCache[V]) get(k string, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || now.After(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) put(k string, v V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for key, e := range c.m {
			if time.Now().After(e.expires) {
				delete(c.m, key)
			}
		}
		if len(c.m) >= c.max {
			clear(c.m)
		}
	}
	c.m[k] = ttlEntry[V]{v: v, expires: expires}
}

// Auth authenticates bearer tokens with TokenReview and authorizes
// Attributes with SubjectAccessReview, the way the kubelet and
// kube-rbac-proxy do, caching answers for a short TTL.
type Auth struct {
	client kubernetes.Interface
	ttl    time.Duration
	now    func() time.Time
	users  *ttlCache[*authnv1.UserInfo]
	allows *ttlCache[authzDecision]
}

type authzDecision struct {
	allowed bool
	reason  string
}

// NewAuth returns an Auth that reviews with client (the gateway's own
// identity, which needs create on tokenreviews and subjectaccessreviews).
func NewAuth(client kubernetes.Interface, ttl time.Duration) *Auth {
	return &Auth{client: client, ttl: ttl, now: time.Now,
		users: newTTLCache[*authnv1.UserInfo](4096), allows: newTTLCache[authzDecision](16384)}
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", fmt.Errorf("%w: no Authorization header; send 'Authorization: Bearer <Kubernetes token>'", ErrUnauthenticated)
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", fmt.Errorf("%w: the Authorization header is not 'Bearer <token>'", ErrUnauthenticated)
	}
	return strings.TrimSpace(tok), nil
}

// Authenticate returns the user the token belongs to. A rejected token is
// ErrUnauthenticated; a failed review is another error.
func (a *Auth) Authenticate(ctx context.Context, token string) (*authnv1.UserInfo, error) {
	sum := sha256.Sum256([]byte(token))
	key := string(sum[:])
	now := a.now()
	if u, ok := a.users.get(key, now); ok {
		if u == nil {
			return nil, fmt.Errorf("%w: the token was not accepted by the API server", ErrUnauthenticated)
		}
		return u, nil
	}
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to create TokenReview: %w", err)
	}
	if !tr.Status.Authenticated {
		a.users.put(key, nil, now.Add(a.ttl))
		msg := "the token was not accepted by the API server"
		if tr.Status.Error != "" {
			msg += ": " + tr.Status.Error
		}
		return nil, fmt.Errorf("%w: %s", ErrUnauthenticated, msg)
	}
	u := tr.Status.User
	a.users.put(key, &u, now.Add(a.ttl))
	return &u, nil
}

// Authorize asks the API server whether user may do attrs.
func (a *Auth) Authorize(ctx context.Context, u *authnv1.UserInfo, attrs Attributes) (bool, string, error) {
	key := u.Username + "\x00" + u.UID + "\x00" + strings.Join(u.Groups, "\x01") + "\x00" +
		attrs.Verb + "\x00" + attrs.Resource + "\x00" + attrs.Subresource + "\x00" + attrs.Namespace + "\x00" + attrs.Name
	now := a.now()
	if d, ok := a.allows.get(key, now); ok {
		return d.allowed, d.reason, nil
	}
	extra := make(map[string]authzv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
		ResourceAttributes: &authzv1.ResourceAttributes{
			Group: Group, Verb: attrs.Verb, Resource: attrs.Resource, Subresource: attrs.Subresource,
			Namespace: attrs.Namespace, Name: attrs.Name,
		},
	}}
	res, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, "", fmt.Errorf("failed to create SubjectAccessReview: %w", err)
	}
	d := authzDecision{allowed: res.Status.Allowed && !res.Status.Denied, reason: res.Status.Reason}
	a.allows.put(key, d, now.Add(a.ttl))
	return d.allowed, d.reason, nil
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

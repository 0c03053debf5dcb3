package server

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/infera-io/temper/apis/wellknown"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// maxPageTokenLen bounds a page token: three bounded keys and two filters,
// base64-encoded, fit well below it.
const maxPageTokenLen = 4096

// pageToken is the decoded ListPods page token: the filters it was issued
// for and the key of the last pod returned.
type pageToken struct {
	V         int    `json:"v"`
	Tier      string `json:"t,omitempty"`
	Namespace string `json:"n,omitempty"`
	After     podKey `json:"a"`
}

type podKey struct {
	Namespace string `json:"n"`
	Name      string `json:"m"`
	UID       string `json:"u"`
}

func keyOf(p Pod) podKey { return podKey{Namespace: p.Namespace, Name: p.Name, UID: p.UID} }

func compareKeys(a, b podKey) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.UID, b.UID))
}

// listQuery is a validated ListPodsRequest.
type listQuery struct {
	tier      string
	namespace string
	size      int
	after     *podKey
}

func parseListPods(req *inferav1.ListPodsRequest) (listQuery, error) {
	q := listQuery{tier: req.GetTier(), namespace: req.GetNamespace()}
	if q.tier != "" {
		if _, err := wellknown.ParseTier(q.tier); err != nil {
			return q, fmt.Errorf("tier: %w", err)
		}
	}
	if len(q.namespace) > maxNameLen {
		return q, fmt.Errorf("namespace: %d bytes, longer than the %d allowed", len(q.namespace), maxNameLen)
	}
	switch n := req.GetPageSize(); {
	case n < 0:
		return q, fmt.Errorf("page_size: must not be negative, got %d", n)
	case n == 0:
		q.size = DefaultPageSize
	default:
		q.size = min(int(n), MaxPageSize)
	}
	if t := req.GetPageToken(); t != "" {
		after, err := decodePageToken(t, q.tier, q.namespace)
		if err != nil {
			return q, fmt.Errorf("page_token: %w", err)
		}
		q.after = &after
	}
	return q, nil
}

func decodePageToken(t, tier, namespace string) (podKey, error) {
	if len(t) > maxPageTokenLen {
		return podKey{}, fmt.Errorf("%d bytes, longer than any token this server issues", len(t))
	}
	raw, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil {
		return podKey{}, fmt.Errorf("malformed: %w", err)
	}
	var pt pageToken
	if err := json.Unmarshal(raw, &pt); err != nil || pt.V != 1 {
		return podKey{}, fmt.Errorf("malformed: not a token issued by this server")
	}
	if pt.Tier != tier || pt.Namespace != namespace {
		return podKey{}, fmt.Errorf("issued for tier %q and namespace %q, used with tier %q and namespace %q",
			bound(pt.Tier, maxShortLen), bound(pt.Namespace, maxNameLen), tier, namespace)
	}
	return pt.After, nil
}

func encodePageToken(tier, namespace string, after podKey) string {
	raw, err := json.Marshal(pageToken{V: 1, Tier: tier, Namespace: namespace, After: after})
	if err != nil {
		// Only strings in a fixed struct: cannot fail.
		panic(fmt.Sprintf("failed to encode a page token: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

// page filters, bounds and sorts pods and returns the page q asks for, the
// next page's token ("" on the last page) and the number of pods matching
// the filters. Keys are compared after bounding, so tokens stay bounded.
func (q listQuery) page(pods []Pod) ([]Pod, string, int) {
	matched := make([]Pod, 0, min(len(pods), 1024))
	for _, p := range pods {
		if q.tier != "" && p.Tier != q.tier {
			continue
		}
		if q.namespace != "" && p.Namespace != q.namespace {
			continue
		}
		matched = append(matched, boundPod(p))
	}
	slices.SortFunc(matched, func(a, b Pod) int { return compareKeys(keyOf(a), keyOf(b)) })
	start := 0
	if q.after != nil {
		start, _ = slices.BinarySearchFunc(matched, *q.after, func(p Pod, k podKey) int { return compareKeys(keyOf(p), k) })
		for start < len(matched) && compareKeys(keyOf(matched[start]), *q.after) <= 0 {
			start++
		}
	}
	end := min(start+q.size, len(matched))
	page := matched[start:end]
	next := ""
	if end < len(matched) && len(page) > 0 {
		next = encodePageToken(q.tier, q.namespace, keyOf(page[len(page)-1]))
	}
	return page, next, len(matched)
}

package gateway

import (
	"encoding/base64"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Page sizes of every list call.
const (
	defaultPageSize = 100
	maxPageSize     = 500
)

type pageToken struct {
	Offset int    `json:"o"`
	Filter string `json:"f"`
}

// page returns the [start, end) slice of a listing of total items, ordered
// the same way on every call, and the token of the next page. filter names
// the listing's filters; a token from other filters is INVALID_ARGUMENT.
func page(size int32, token, filter string, total int) (start, end int, next string, err error) {
	switch {
	case size < 0:
		return 0, 0, "", status.Errorf(codes.InvalidArgument, "page_size: %d is negative", size)
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	if token != "" {
		b, derr := base64.RawURLEncoding.DecodeString(token)
		var t pageToken
		if derr != nil || json.Unmarshal(b, &t) != nil || t.Offset < 0 {
			return 0, 0, "", status.Error(codes.InvalidArgument, "page_token: malformed; pass the next_page_token of the previous response unchanged")
		}
		if t.Filter != filter {
			return 0, 0, "", status.Error(codes.InvalidArgument, "page_token: it was issued for other filters; repeat the filters of the first page")
		}
		start = t.Offset
	}
	start = min(start, total)
	end = min(start+int(size), total)
	if end < total {
		b, _ := json.Marshal(pageToken{Offset: end, Filter: filter})
		next = base64.RawURLEncoding.EncodeToString(b)
	}
	return start, end, next, nil
}

func filterKey(parts ...string) string { return fmt.Sprintf("%q", parts) }

// tokenFilter returns the filter a well-formed token was issued for; "" for
// a malformed one (page then reports it).
func tokenFilter(token string) string {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return ""
	}
	var t pageToken
	if json.Unmarshal(b, &t) != nil {
		return ""
	}
	return t.Filter
}

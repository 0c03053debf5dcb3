package gateway

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzPage feeds arbitrary page sizes and tokens, as a client can send
// them, to the pagination of every list call. A rejection is
// INVALID_ARGUMENT naming the field; an accepted request gives a window
// inside the listing no longer than the largest page, and its next token
// continues exactly where the window ends, for the same filters only.
func FuzzPage(f *testing.F) {
	tok := func(o int, filter string) string {
		b, _ := json.Marshal(pageToken{Offset: o, Filter: filter})
		return base64.RawURLEncoding.EncodeToString(b)
	}
	f.Add(int32(0), "", `["pool=a"]`, 1000)
	f.Add(int32(10), tok(20, `["pool=a"]`), `["pool=a"]`, 25)
	f.Add(int32(-1), tok(-5, ""), "", 3)
	f.Add(int32(1<<30), tok(1<<62, "x"), "x", 7)
	f.Add(int32(5), "!!not base64", "", 7)
	f.Fuzz(func(t *testing.T, size int32, token, raw string, total int) {
		filter := filterKey(raw) // every list call builds its filter this way
		if total < 0 || total > 1<<20 {
			return // listings are never negative, and never this long
		}
		start, end, next, err := page(size, token, filter, total)
		if err != nil {
			st, _ := status.FromError(err)
			if st.Code() != codes.InvalidArgument || (st.Message()[:9] != "page_size" && st.Message()[:10] != "page_token") {
				t.Fatalf("rejection %v is not INVALID_ARGUMENT naming page_size or page_token", err)
			}
			return
		}
		if start < 0 || start > end || end > total || end-start > maxPageSize {
			t.Fatalf("window [%d, %d) of %d items", start, end, total)
		}
		if size > 0 && end-start > int(size) {
			t.Fatalf("page of %d items for page_size %d", end-start, size)
		}
		if (next == "") != (end == total) {
			t.Fatalf("next token %q with window end %d of %d", next, end, total)
		}
		if next == "" {
			return
		}
		if tokenFilter(next) != filter {
			t.Fatalf("next token carries filter %q, want %q", tokenFilter(next), filter)
		}
		s2, _, _, err := page(size, next, filter, total)
		if err != nil || s2 != end {
			t.Fatalf("next page starts at %d (%v), want %d", s2, err, end)
		}
		if _, _, _, err := page(size, next, filterKey(raw+"x"), total); err == nil {
			t.Fatalf("a token was accepted for other filters")
		}
	})
}

package kubeauth

import (
	"errors"
	"fmt"
	"net/http"
)

// HTTP wraps next so that only callers whose bearer token the API server
// accepts and whose attrs(r) it authorizes reach it: 401 without a usable
// token, 403 when not allowed, 503 when a review cannot be made. Errors are
// plain text naming the user and the attributes.
func (r *Reviewer) HTTP(next http.Handler, attrs func(*http.Request) Attributes) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, err := r.Check(req.Context(), req.Header.Get("Authorization"), attrs(req))
		if err == nil {
			next.ServeHTTP(w, req)
			return
		}
		code := http.StatusServiceUnavailable
		var e *Error
		if errors.As(err, &e) {
			switch e.Code {
			case CodeUnauthenticated:
				code = http.StatusUnauthorized
				w.Header().Set("WWW-Authenticate", `Bearer realm="infera"`)
			case CodeForbidden:
				code = http.StatusForbidden
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		_, _ = fmt.Fprintln(w, err.Error())
	})
}

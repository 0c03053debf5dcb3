package kubeauth

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// MethodAttributes maps a gRPC full method name to what it needs; ok false
// refuses the method (PermissionDenied) without asking the API server.
type MethodAttributes func(fullMethod string) (attrs Attributes, ok bool)

// GRPCServerOptions returns the interceptors that check every call's
// "authorization: Bearer <token>" metadata like HTTP does. Calls for which
// trusted(ctx) is true pass unchecked (a unix-socket peer, which file
// permissions guard); trusted may be nil.
func (r *Reviewer) GRPCServerOptions(attrs MethodAttributes, trusted func(context.Context) bool) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if trusted != nil && trusted(ctx) {
				return h(ctx, req)
			}
			if err := r.checkGRPC(ctx, info.FullMethod, attrs); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if trusted != nil && trusted(ss.Context()) {
				return h(srv, ss)
			}
			if err := r.checkGRPC(ss.Context(), info.FullMethod, attrs); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

func (r *Reviewer) checkGRPC(ctx context.Context, method string, attrs MethodAttributes) error {
	a, ok := attrs(method)
	if !ok {
		return status.Errorf(codes.PermissionDenied, "method %s is not served here", method)
	}
	var header string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			header = v[0]
		}
	}
	_, err := r.Check(ctx, header, a)
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Code {
		case CodeUnauthenticated:
			return status.Error(codes.Unauthenticated, err.Error())
		case CodeForbidden:
			return status.Error(codes.PermissionDenied, err.Error())
		}
	}
	return status.Error(codes.Unavailable, err.Error())
}

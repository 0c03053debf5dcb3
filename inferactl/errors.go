package inferactl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/clientcmd"
)

// Exit codes (docs/cli.md lists them). Scripts may rely on them.
const (
	ExitOK           = 0
	ExitError        = 1  // anything not listed below
	ExitUsage        = 2  // bad flags or arguments
	ExitNoCluster    = 3  // no kubeconfig, or the API server cannot be reached
	ExitNoGateway    = 4  // the command needs infera-gateway and none is configured or reachable
	ExitForbidden    = 5  // not authenticated, or RBAC denies the verb on the resource
	ExitNotFound     = 6  // unknown pod or node
	ExitNoCRDs       = 7  // the infera.io CRDs are not installed
	ExitRefused      = 8  // safe mode owned by an InferaPolicy, without --force
	ExitTimeout      = 9  // --wait ran out of time
	ExitNotAvailable = 10 // the data the command shows is not served yet
	ExitPartial      = 11 // an action failed on some of the selected nodes
)

// Error is an error a person can act on: what went wrong and what to do
// next, and the exit code scripts see.
type Error struct {
	Code int
	Msg  string
	// Hint says what to do next; empty when there is nothing to add.
	Hint string
	Err  error
}

func (e *Error) Error() string {
	s := e.Msg
	if e.Hint != "" {
		s += "\n" + e.Hint
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func errf(code int, hint string, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// ExitCode returns the exit code of err (ExitOK for nil).
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitError
}

const (
	hintKubeconfig = "Set KUBECONFIG or pass --kubeconfig (for `make run`: export KUBECONFIG=$PWD/.run/kubeconfig)."
	hintGateway    = "Point inferactl at infera-gateway with --gateway URL or INFERA_GATEWAY (for `make run`: http://127.0.0.1:8090;\n" +
		"in a cluster: kubectl -n infera-system port-forward svc/infera-gateway 8090, then --gateway http://127.0.0.1:8090)."
	hintCRDs = "Install Temper (helm install temper charts/temper -n infera-system --create-namespace)\n" +
		"or only its CRDs (kubectl apply -f config/crd/bases/)."
	hintRoles = "Ask an administrator to bind the role you need: infera-viewer to read, infera-operator for safe mode, e.g.\n" +
		"  kubectl create clusterrolebinding <you>-infera-viewer --clusterrole=infera-viewer --user=<you>"
)

// kubeError turns an error of the Kubernetes API into an *Error. what names
// the object or list the call was about.
func kubeError(err error, what string) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	switch {
	case clientcmd.IsEmptyConfig(err):
		return &Error{Code: ExitNoCluster, Msg: "no kubeconfig: " + err.Error(), Hint: hintKubeconfig, Err: err}
	case apierrors.IsForbidden(err):
		return &Error{Code: ExitForbidden, Msg: "permission denied by the API server: " + apiMessage(err), Hint: hintRoles, Err: err}
	case apierrors.IsUnauthorized(err):
		return &Error{Code: ExitForbidden, Msg: "the API server did not accept your credentials: " + apiMessage(err),
			Hint: "Log in again or check the user of your kubeconfig context (kubectl config view --minify).", Err: err}
	case apierrors.IsNotFound(err):
		return &Error{Code: ExitNotFound, Msg: what + " not found", Err: err}
	case isConnError(err):
		return &Error{Code: ExitNoCluster, Msg: "cannot reach the API server: " + err.Error(),
			Hint: "Check that the cluster is up and that your kubeconfig context points at it (kubectl config current-context).", Err: err}
	}
	return fmt.Errorf("failed to read %s: %w", what, err)
}

func apiMessage(err error) string {
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		return s.Status().Message
	}
	return err.Error()
}

func isConnError(err error) bool {
	var ne *net.OpError
	var ue *url.Error
	if errors.As(err, &ne) || (errors.As(err, &ue) && !strings.Contains(ue.Error(), "x509")) {
		return true
	}
	return strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host")
}

func asError(err error, target **Error) bool { return errors.As(err, target) }

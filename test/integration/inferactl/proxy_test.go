package inferactl

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestServiceProxyDropsBearerToken is why inferactl does not reach the
// gateway through the API server's service proxy
// (/api/v1/namespaces/NS/services/NAME:PORT/proxy/...): the API server
// authenticates the caller and then removes the Authorization header, so
// the backend never sees the caller's token and the gateway, which
// authenticates by that token, could only answer 401. The backend here
// records the headers it receives.
func TestServiceProxyDropsBearerToken(t *testing.T) {
	ip := nonLoopbackIP(t)
	var mu sync.Mutex
	var seen http.Header
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	backend.Listener = l
	backend.Start()
	defer backend.Close()
	port := l.Addr().(*net.TCPAddr).Port

	ctx := t.Context()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "proxy-probe", Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: int32(port), TargetPort: intstr.FromInt32(int32(port))}}}}
	if _, err := kube.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.CoreV1().Services("default").Delete(context.Background(), "proxy-probe", metav1.DeleteOptions{})
	})
	// The service proxy only forwards to endpoints that are Pods with
	// that IP: a Pod object stands for the gateway's.
	p := pod("default", "proxy-probe", "", "", nil, "10m") // unbound: not in any pod list
	created, err := kube.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.PodIP = ip
	created.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	if _, err := kube.CoreV1().Pods("default").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.CoreV1().Pods("default").Delete(context.Background(), "proxy-probe", metav1.DeleteOptions{})
	})
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "proxy-probe-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "proxy-probe"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "proxy-probe", UID: created.UID}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: ptrTo(int32(port))}},
	}
	if _, err := kube.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.DiscoveryV1().EndpointSlices("default").Delete(context.Background(), "proxy-probe-1", metav1.DeleteOptions{})
	})
	// The operator's token kubeconfig: a bearer token reaches the API server.
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigs[operator])
	if err != nil {
		t.Fatal(err)
	}
	// The operator may not proxy services; the admin may. Proxy as the
	// admin but with a bearer token: mint one for a ServiceAccount bound
	// to cluster-admin.
	cfg.BearerToken = adminToken(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The API server finds endpoints through its caches: retry briefly.
	var body []byte
	for i := 0; i < 50; i++ {
		body, err = cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/namespaces/default/services/http:proxy-probe:http/proxy/api/v1/fleet").
			SetHeader("X-Probe", "passed").DoRaw(ctx)
		if err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("GET through the service proxy: %v (%s)", err, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen == nil {
		t.Fatal("the backend saw no request")
	}
	if seen.Get("X-Probe") != "passed" {
		t.Fatalf("the backend did not get the request's own header X-Probe: %v", seen)
	}
	if a := seen.Get("Authorization"); a != "" {
		t.Errorf("the service proxy passed Authorization %q to the backend; inferactl could use the proxy", a)
	}
}

func ptrTo[T any](v T) *T { return &v }

func nonLoopbackIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address: the API server refuses to proxy to loopback")
	return ""
}

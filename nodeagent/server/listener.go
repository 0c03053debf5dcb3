package server

import "net"

// ServeListener serves the API also on l (the agent's optional TLS listener
// for the gateway) in the background; Stop stops it and closes l. The
// listener's own guard (TLS, and the interceptors of Options.ServerOptions)
// is the caller's to set up.
func (s *GRPCServer) ServeListener(l net.Listener) {
	c := make(chan error, 1)
	s.mu.Lock()
	s.extraErr = append(s.extraErr, c)
	s.mu.Unlock()
	go func() { c <- s.srv.Serve(l) }()
	s.log.Info("serving the agent API", "address", l.Addr().String())
}

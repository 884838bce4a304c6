package proxy

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// serveConnect passes a CONNECT tunnel through to an allowed host:port
// (Config.ConnectAllow): an apt or dnf client configured with an https://
// repository and pkgswarm as its proxy. The bytes are TLS the proxy cannot
// read, so nothing of a tunnel is cached or verified; use the /https/HOST/
// prefix to have pkgswarm fetch over TLS, verify and cache.
func (s *Server) serveConnect(w http.ResponseWriter, r *http.Request) {
	target := strings.ToLower(r.Host)
	if !s.connectAllowed(target) {
		s.refuse(w, http.StatusForbidden, "CONNECT to "+target+" is not allowed (see --connect-allow); use http:// repository URLs or the /https/HOST/ prefix to have pkgswarm cache them")
		return
	}
	up, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(r.Context(), "tcp", target)
	if err != nil {
		s.refuse(w, http.StatusBadGateway, "CONNECT "+target+": "+err.Error())
		return
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		s.log.Warn("CONNECT: cannot take over the client connection", "target", target, "err", err)
		return
	}
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		conn.Close()
		up.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if n := buf.Reader.Buffered(); n > 0 {
			b, _ := buf.Reader.Peek(n)
			up.Write(b)
		}
		io.Copy(up, conn)
		if tc, ok := up.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	go func() {
		defer wg.Done()
		io.Copy(conn, up)
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	wg.Wait()
	conn.Close()
	up.Close()
}

func (s *Server) connectAllowed(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" || port == "" {
		return false
	}
	for _, a := range s.cfg.ConnectAllow {
		if strings.EqualFold(a, hostport) {
			return true
		}
	}
	return false
}

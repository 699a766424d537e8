package webui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"mailgate/admin"
	"mailgate/config"
	"mailgate/eventlog"
)

const (
	sessionCookie = "__Host-mailgate-session"
	loginCookie   = "__Host-mailgate-login" // CSRF token of the login form
)

// session is one logged-in browser. Its fields are guarded by Server.mu.
type session struct {
	key     string // hash of the cookie token, the key in Server.sessions
	user    string
	remote  netip.Addr
	csrf    string
	pwHash  string // the password hash the login was checked against
	created time.Time
	seen    time.Time
	flash   string // shown once by the next page
	// notice: the post-login banner is still to be accepted; every page
	// but /banner and /logout leads there until it is.
	notice bool
}

// request is what a handler knows about an authenticated request.
type request struct {
	sess     *session
	user     string
	readOnly bool
	csrf     string
	cfg      *config.Config
	rev      uint64
}

func newToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand panics without randomness)
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenKey(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// newSession starts a session for a successful login and sets its cookie.
func (s *Server) newSession(w http.ResponseWriter, user, pwHash string, ip netip.Addr) *session {
	tok := newToken()
	now := s.now()
	c, _ := s.svc.Config()
	sess := &session{key: tokenKey(tok), user: user, remote: ip, csrf: newToken(), pwHash: pwHash, created: now, seen: now,
		notice: c.System.Global.AdminPostLoginBanner() != ""}
	s.mu.Lock()
	if len(s.sessions) >= maxSessions {
		s.pruneLocked(now)
	}
	s.sessions[sess.key] = sess
	s.mu.Unlock()
	setCookie(w, sessionCookie, tok, 0)
	return sess
}

// pruneLocked drops expired sessions and, if there are still too many,
// the least recently used one.
func (s *Server) pruneLocked(now time.Time) {
	idle := s.idleTimeout()
	var oldest *session
	for k, se := range s.sessions {
		if now.Sub(se.seen) > idle || now.Sub(se.created) > sessionLifetime {
			delete(s.sessions, k)
			continue
		}
		if oldest == nil || se.seen.Before(oldest.seen) {
			oldest = se
		}
	}
	if len(s.sessions) >= maxSessions && oldest != nil {
		delete(s.sessions, oldest.key)
	}
}

func (s *Server) idleTimeout() time.Duration {
	c, _ := s.svc.Config()
	if m := c.System.Global.AdminIdleTimeout; m > 0 {
		return time.Duration(m) * time.Minute
	}
	return 15 * time.Minute
}

// lookup returns the session of r's cookie, if there is one.
func (s *Server) lookup(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[tokenKey(ck.Value)]
}

// end forgets a session and logs why.
func (s *Server) end(sess *session, w http.ResponseWriter, why string) {
	s.mu.Lock()
	_, ok := s.sessions[sess.key]
	delete(s.sessions, sess.key)
	s.mu.Unlock()
	if w != nil {
		setCookie(w, sessionCookie, "", -1)
	}
	if ok && why != "" {
		s.svc.Event(eventlog.Information, "admin", sess.user, remoteString(sess.remote), why)
	}
}

// authorize checks r's session against the committed configuration: the
// administrator must still exist with the same password hash and be
// allowed from r's address; the idle timeout and lifetime must not have
// passed. On failure it answers r (a redirect to the login page) and
// returns nil. The form token of a POST is checked here, except for a
// streamed upload (stream): its handler reads the multipart body itself
// and checks the token part before the file (see uploadForm).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, stream bool) *request {
	sess := s.lookup(r)
	if sess == nil {
		if _, err := r.Cookie(sessionCookie); err == nil {
			setCookie(w, sessionCookie, "", -1)
			redirect(w, r, "/login?expired=1")
			return nil
		}
		redirect(w, r, "/login")
		return nil
	}
	c, rev := s.svc.Config()
	now := s.now()
	ip := remoteIP(r)
	s.mu.Lock()
	seen, created := sess.seen, sess.created
	pwHash := sess.pwHash
	s.mu.Unlock()

	var ad *config.Admin
	for i := range c.System.Admin {
		if c.System.Admin[i].Name == sess.user {
			ad = &c.System.Admin[i]
		}
	}
	why := ""
	switch {
	case now.Sub(seen) > s.idleTimeout():
		why = "logout: idle timeout"
	case now.Sub(created) > sessionLifetime:
		why = "logout: session lifetime exceeded"
	case ad == nil:
		why = "logout: administrator removed"
	case ad.Password != pwHash:
		why = "logout: password changed"
	case ip != sess.remote:
		why = "logout: client address not allowed"
	default:
		if refusal := admin.LoginRefusal(*ad, ip, admin.ChannelGUI); refusal != "" {
			why = "logout: " + refusal
		}
	}
	if why != "" {
		s.end(sess, w, why)
		redirect(w, r, "/login?expired=1")
		return nil
	}
	s.mu.Lock()
	sess.seen = now
	csrf := sess.csrf
	s.mu.Unlock()
	rq := &request{sess: sess, user: sess.user, readOnly: ad.AccessProfile == "read_only_prof", csrf: csrf, cfg: c, rev: rev}

	// The first-boot empty password must be replaced before anything else.
	if ad.Password == "" && r.URL.Path != "/password" && r.URL.Path != "/logout" {
		redirect(w, r, "/password")
		return nil
	}
	// Then the post-login banner must be accepted (unless it has been
	// turned off meanwhile).
	if ad.Password != "" && r.URL.Path != "/banner" && r.URL.Path != "/logout" && s.noticePending(sess, c) {
		redirect(w, r, "/banner")
		return nil
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && !stream {
		r.Body = http.MaxBytesReader(w, r.Body, maxConfigBytes)
		if err := r.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				s.fail(w, r, rq, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form is too large (at most %d MiB).", maxConfigBytes>>20))
			} else {
				s.fail(w, r, rq, http.StatusBadRequest, "The form cannot be read: "+err.Error())
			}
			return nil
		}
		if !s.checkToken(w, r, rq, r.PostFormValue("csrf")) {
			return nil
		}
	}
	return rq
}

// checkToken checks the form token of a POST; it answers r itself when
// the token is missing or wrong.
func (s *Server) checkToken(w http.ResponseWriter, r *http.Request, rq *request, tok string) bool {
	if sameToken(rq.csrf, tok) {
		return true
	}
	s.svc.Event(eventlog.Warning, "admin", rq.user, remoteString(remoteIP(r)), "web request refused: missing or wrong form token ("+r.Method+" "+r.URL.Path+")")
	s.fail(w, r, rq, http.StatusForbidden, "The form has expired or did not come from this page. Reload the page and try again.")
	return false
}

// noticePending reports whether sess has yet to accept the post-login
// banner of c; a banner turned off meanwhile counts as accepted.
func (s *Server) noticePending(sess *session, c *config.Config) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.notice && c.System.Global.AdminPostLoginBanner() == "" {
		sess.notice = false
	}
	return sess.notice
}

// takeFlash returns and clears the session's one-time message.
func (s *Server) takeFlash(sess *session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := sess.flash
	sess.flash = ""
	return f
}

func (s *Server) setFlash(sess *session, msg string) {
	s.mu.Lock()
	sess.flash = msg
	s.mu.Unlock()
}

// redirect answers with a 303 See Other to a local path.
func redirect(w http.ResponseWriter, r *http.Request, path string) {
	http.Redirect(w, r, path, http.StatusSeeOther)
}

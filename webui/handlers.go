package webui

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailgate/admin"
	"mailgate/config"
	"mailgate/config/fortimail"
	"mailgate/eventlog"
	"mailgate/queue"
	"mailgate/store"
)

type handler func(w http.ResponseWriter, r *http.Request, rq *request)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /favicon.ico", http.NotFound)

	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.auth(s.logout))
	mux.HandleFunc("GET /password", s.auth(s.passwordPage))
	mux.HandleFunc("POST /password", s.auth(s.changePassword))
	mux.HandleFunc("GET /banner", s.auth(s.bannerPage))
	mux.HandleFunc("POST /banner", s.auth(s.acceptBanner))

	mux.HandleFunc("GET /{$}", s.auth(func(w http.ResponseWriter, r *http.Request, rq *request) { redirect(w, r, "/status") }))
	mux.HandleFunc("GET /status", s.auth(s.status))
	mux.HandleFunc("GET /config", s.auth(s.configPage))
	mux.HandleFunc("POST /config", s.writes(s.apply))
	mux.HandleFunc("GET /config/backup", s.auth(s.backup))
	mux.HandleFunc("GET /revisions", s.auth(s.revisions))
	mux.HandleFunc("GET /revisions/{id}", s.auth(s.revision))
	mux.HandleFunc("GET /revisions/{id}/revert", s.writes(s.revertConfirm))
	mux.HandleFunc("POST /revisions/{id}/revert", s.writes(s.revert))
	mux.HandleFunc("GET /logs", s.auth(s.logs))
	mux.HandleFunc("GET /queue", s.auth(s.queueList))
	mux.HandleFunc("POST /queue/retry", s.writes(s.queueRetryAll))
	mux.HandleFunc("GET /queue/{id}", s.auth(s.queueView))
	mux.HandleFunc("GET /queue/{id}/download", s.auth(s.queueDownload))
	mux.HandleFunc("POST /queue/{id}/retry", s.writes(s.queueRetry))
	mux.HandleFunc("GET /queue/{id}/delete", s.writes(s.queueDeleteConfirm))
	mux.HandleFunc("POST /queue/{id}/delete", s.writes(s.queueDelete))
	mux.HandleFunc("GET /firmware", s.auth(s.firmwarePage))
	mux.HandleFunc("POST /firmware", s.upload(s.firmwareInstall))
	mux.HandleFunc("/", s.auth(func(w http.ResponseWriter, r *http.Request, rq *request) {
		s.fail(w, r, rq, http.StatusNotFound, "There is no such page.")
	}))

	// Defence in depth besides the form tokens: browsers' cross-origin
	// POSTs are refused from their Sec-Fetch-Site or Origin headers.
	return http.NewCrossOriginProtection().Handler(mux)
}

// auth runs h for requests of a valid session (see authorize).
func (s *Server) auth(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if rq := s.authorize(w, r, false); rq != nil {
			h(w, r, rq)
		}
	}
}

// writes runs h for administrators who may change the appliance.
func (s *Server) writes(h handler) http.HandlerFunc {
	return s.auth(func(w http.ResponseWriter, r *http.Request, rq *request) {
		if !s.denied(w, r, rq) {
			h(w, r, rq)
		}
	})
}

// denied refuses (and answers) the request of a read-only administrator.
func (s *Server) denied(w http.ResponseWriter, r *http.Request, rq *request) bool {
	if !rq.readOnly {
		return false
	}
	s.svc.Event(eventlog.Warning, "admin", rq.user, remoteString(remoteIP(r)), "permission denied: "+r.Method+" "+r.URL.Path)
	s.fail(w, r, rq, http.StatusForbidden, "Permission denied: the read_only_prof access profile cannot change the appliance.")
	return true
}

func (s *Server) event(r *http.Request, rq *request, subsystem, msg string) {
	s.svc.Event(eventlog.Notice, subsystem, rq.user, remoteString(remoteIP(r)), msg)
}

// ---- login ----

type loginBody struct {
	Name   string
	Banner string // the pre-login banner, "" for none
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if s.lookup(r) != nil {
		redirect(w, r, "/status")
		return
	}
	v := &view{}
	switch {
	case r.URL.Query().Has("expired"):
		v.Flash = "Your session has ended. Please log in again."
	case r.URL.Query().Has("bye"):
		v.Flash = "You have logged out."
	}
	s.loginForm(w, r, http.StatusOK, "", v)
}

// loginForm shows the login form with a per-browser form token (kept
// while the browser has one, so that several tabs work).
func (s *Server) loginForm(w http.ResponseWriter, r *http.Request, status int, name string, v *view) {
	tok := ""
	if ck, err := r.Cookie(loginCookie); err == nil && len(ck.Value) == 43 {
		tok = ck.Value
	} else {
		tok = newToken()
	}
	setCookie(w, loginCookie, tok, 3600)
	c, _ := s.svc.Config()
	v.Title, v.CSRF, v.Class = "Log in", tok, "login-page"
	v.Body = loginBody{Name: name, Banner: c.System.Global.AdminPreLoginBanner()}
	s.render(w, status, "login", v)
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	name, password := r.PostFormValue("name"), r.PostFormValue("password")
	if len(name) > maxNameBytes {
		name = name[:maxNameBytes] // never a valid name; keeps the event log tidy
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(ck.Value, r.PostFormValue("csrf")) {
		s.svc.Event(eventlog.Warning, "admin", "", remoteString(remoteIP(r)), "web login refused: missing or wrong form token")
		s.loginForm(w, r, http.StatusForbidden, name, &view{Error: "The login form has expired. Please try again."})
		return
	}
	ip := remoteIP(r)
	before, _ := s.svc.Config()
	acc, err := s.svc.CheckLogin(name, password, ip, admin.ChannelGUI)
	if err == nil {
		// The session is tied to the password hash it was granted with.
		after, _ := s.svc.Config()
		h1, ok1 := adminHash(before, acc.Name)
		h2, ok2 := adminHash(after, acc.Name)
		if !ok1 || !ok2 || h1 != h2 {
			err = admin.ErrLoginFailed
		} else {
			setCookie(w, loginCookie, "", -1)
			se := s.newSession(w, acc.Name, h2, ip)
			switch {
			case acc.MustChangePassword:
				redirect(w, r, "/password")
			case se.notice:
				redirect(w, r, "/banner")
			default:
				redirect(w, r, "/status")
			}
			return
		}
	}
	s.pause(r)
	if errors.Is(err, admin.ErrLoginThrottled) {
		s.loginForm(w, r, http.StatusTooManyRequests, name, &view{Error: "Too many failed logins from your address. Try again later."})
		return
	}
	s.loginForm(w, r, http.StatusUnauthorized, name, &view{Error: "Login failed."})
}

func adminHash(c *config.Config, name string) (string, bool) {
	for _, ad := range c.System.Admin {
		if ad.Name == name {
			return ad.Password, true
		}
	}
	return "", false
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, rq *request) {
	s.end(rq.sess, w, "logout")
	redirect(w, r, "/login?bye=1")
}

func (s *Server) passwordPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if h, _ := adminHash(rq.cfg, rq.user); h != "" {
		redirect(w, r, "/status")
		return
	}
	s.page(w, rq, http.StatusOK, "password", "", "Change your password", nil, &view{Limited: true})
}

// changePassword is the forced change of the empty first-boot password,
// with the checks of the SSH CLI.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, rq *request) {
	if h, _ := adminHash(rq.cfg, rq.user); h != "" {
		redirect(w, r, "/status")
		return
	}
	p1, p2 := r.PostFormValue("new"), r.PostFormValue("confirm")
	msg := ""
	switch {
	case p1 != p2:
		msg = "The passwords do not match."
	case p1 == "":
		msg = "The password must not be empty."
	default:
		if err := s.svc.SetPassword(rq.user, rq.user, p1); err != nil {
			msg = capitalize(err.Error()) + "."
		}
	}
	if msg != "" {
		s.page(w, rq, http.StatusUnprocessableEntity, "password", "", "Change your password", nil, &view{Limited: true, Error: msg})
		return
	}
	c, _ := s.svc.Config()
	h, ok := adminHash(c, rq.user)
	if !ok || h == "" {
		s.page(w, rq, http.StatusInternalServerError, "password", "", "Change your password", nil, &view{Limited: true, Error: "The password could not be set."})
		return
	}
	// A new session token for the new password.
	s.end(rq.sess, nil, "")
	se := s.newSession(w, rq.user, h, remoteIP(r))
	s.svc.Event(eventlog.Information, "admin", rq.user, remoteString(remoteIP(r)), "password changed at first login")
	s.setFlash(se, "Your password has been changed.")
	if se.notice {
		redirect(w, r, "/banner")
		return
	}
	redirect(w, r, "/status")
}

// bannerPage shows the post-login banner, which the administrator accepts
// to go on, or declines by logging out.
func (s *Server) bannerPage(w http.ResponseWriter, r *http.Request, rq *request) {
	if !s.noticePending(rq.sess, rq.cfg) {
		redirect(w, r, "/status")
		return
	}
	s.page(w, rq, http.StatusOK, "banner", "", "Notice", rq.cfg.System.Global.AdminPostLoginBanner(), &view{Limited: true})
}

// acceptBanner records that the administrator accepted the post-login
// banner.
func (s *Server) acceptBanner(w http.ResponseWriter, r *http.Request, rq *request) {
	if s.noticePending(rq.sess, rq.cfg) {
		s.mu.Lock()
		rq.sess.notice = false
		s.mu.Unlock()
		s.svc.Event(eventlog.Information, "admin", rq.user, remoteString(remoteIP(r)), "post-login banner accepted")
	}
	redirect(w, r, "/status")
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// ---- status ----

// status shows what `get system status` prints.
func (s *Server) status(w http.ResponseWriter, r *http.Request, rq *request) {
	s.page(w, rq, http.StatusOK, "status", "status", "Status", s.svc.Status(s.now()), nil)
}

// ---- configuration ----

type configBody struct {
	Rev  uint64
	Text string
}

func (s *Server) configPage(w http.ResponseWriter, r *http.Request, rq *request) {
	s.page(w, rq, http.StatusOK, "config", "config", "Configuration", configBody{rq.rev, config.Render(rq.cfg, true)}, nil)
}

// apply replaces the configuration with the submitted text, as a restore
// does: it must parse and validate as a whole, or nothing changes.
func (s *Server) apply(w http.ResponseWriter, r *http.Request, rq *request) {
	text := strings.ReplaceAll(r.PostFormValue("config"), "\r\n", "\n")
	base, _ := strconv.ParseUint(r.PostFormValue("rev"), 10, 64)
	again := func(status int, msg string, details []string) {
		s.page(w, rq, status, "config", "config", "Configuration", configBody{base, text}, &view{Error: msg, Errors: details})
	}
	if base != rq.rev {
		again(http.StatusConflict, fmt.Sprintf("The configuration was changed (now revision %d) after this page was loaded; nothing was changed. Reload the page to edit the current configuration.", rq.rev), nil)
		return
	}
	if fortimail.IsBackup(text) {
		s.importFortiMail(w, r, rq, text)
		return
	}
	c, err := config.Parse(text, s.svc.Env())
	if err == nil {
		err = config.Validate(c, s.svc.Env())
	}
	if err == nil {
		err = s.svc.Replace(rq.user, "web UI", c)
	}
	if err != nil {
		var ve config.ValidationError
		if errors.As(err, &ve) {
			again(http.StatusUnprocessableEntity, "The configuration is invalid; nothing was changed.", ve)
		} else {
			again(http.StatusUnprocessableEntity, "The configuration was not applied; nothing was changed.", strings.Split(err.Error(), "\n"))
		}
		return
	}
	if _, rev := s.svc.Config(); rev == rq.rev {
		s.setFlash(rq.sess, "No changes: the configuration is the same as before.")
	} else {
		s.event(r, rq, "config", fmt.Sprintf("configuration applied from the web UI as revision %d", rev))
		s.setFlash(rq.sess, fmt.Sprintf("Configuration applied as revision %d.", rev))
	}
	redirect(w, r, "/config")
}

type importBody struct {
	Rev    uint64
	Text   string
	Report *fortimail.Report
	Valid  bool
}

// importFortiMail shows the report of a FortiMail backup submitted on the
// configuration page with Import and Cancel; only the Import button's
// request (import=yes) replaces the configuration.
func (s *Server) importFortiMail(w http.ResponseWriter, r *http.Request, rq *request, text string) {
	c, rep, err := fortimail.Import(text, rq.cfg, fortimail.Env{Config: s.svc.Env(), Factory: s.svc.Factory})
	body := importBody{Rev: rq.rev, Text: text, Report: &rep, Valid: err == nil}
	const title = "Import a FortiMail backup"
	if err != nil {
		v := &view{Error: "The imported configuration is not valid; nothing was changed.", Errors: rep.Invalid}
		if len(rep.Invalid) == 0 {
			v.Error = "The FortiMail backup cannot be imported: " + err.Error()
		}
		s.page(w, rq, http.StatusUnprocessableEntity, "import", "config", title, body, v)
		return
	}
	if r.PostFormValue("import") != "yes" {
		s.page(w, rq, http.StatusOK, "import", "config", title, body, nil)
		return
	}
	if err := s.svc.Replace(rq.user, "configuration imported from a FortiMail backup", c); err != nil {
		s.page(w, rq, http.StatusUnprocessableEntity, "import", "config", title, body, &view{Error: "The configuration was not imported; nothing was changed.", Errors: strings.Split(err.Error(), "\n")})
		return
	}
	_, rev := s.svc.Config()
	s.setFlash(rq.sess, fmt.Sprintf("Configuration imported from the FortiMail backup as revision %d.", rev))
	redirect(w, r, "/config")
}

// backup downloads what `execute backup config` prints.
func (s *Server) backup(w http.ResponseWriter, r *http.Request, rq *request) {
	text := admin.BackupHeader(rq.cfg, rq.user) + config.Render(rq.cfg, true)
	name := fmt.Sprintf("%s-%s-rev%d.conf", fileSafe(rq.cfg.System.Global.Hostname), s.now().Format("20060102-150405"), rq.rev)
	s.svc.Event(eventlog.Information, "config", rq.user, remoteString(remoteIP(r)), fmt.Sprintf("configuration backup of revision %d downloaded", rq.rev))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	io.WriteString(w, text)
}

// fileSafe keeps letters, digits, '.', '-' and '_' of a file name.
func fileSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] == '.' {
		return "mailgate" + string(b)
	}
	return string(b)
}

// ---- revisions ----

type revRow struct {
	ID      uint64
	Time    time.Time
	Admin   string
	Summary string
	Current bool
	Diff    []diffLine
}

type diffLine struct{ Class, Text string }

// summary is what the revision list says about a revision.
func summary(r store.Revision) string {
	if r.Comment == "" {
		return "-"
	}
	return r.Comment
}

func (s *Server) revisions(w http.ResponseWriter, r *http.Request, rq *request) {
	revs, err := s.svc.Revisions()
	if err != nil {
		s.fail(w, r, rq, http.StatusInternalServerError, err.Error())
		return
	}
	rows := make([]revRow, len(revs))
	for i, rv := range revs {
		rows[i] = revRow{ID: rv.ID, Time: rv.Time, Admin: rv.Admin, Summary: summary(rv), Current: rv.ID == rq.rev}
	}
	s.page(w, rq, http.StatusOK, "revisions", "revisions", "Configuration revisions", rows, nil)
}

// revisionOf looks up the revision of the {id} path segment; it answers r
// itself when there is none.
func (s *Server) revisionOf(w http.ResponseWriter, r *http.Request, rq *request) *store.Revision {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	var rv *store.Revision
	if err == nil {
		rv, err = s.svc.Revision(id)
	}
	if err != nil {
		s.fail(w, r, rq, http.StatusNotFound, "There is no such revision.")
		return nil
	}
	return rv
}

func (s *Server) revision(w http.ResponseWriter, r *http.Request, rq *request) {
	rv := s.revisionOf(w, r, rq)
	if rv == nil {
		return
	}
	row := revRow{ID: rv.ID, Time: rv.Time, Admin: rv.Admin, Summary: summary(*rv), Current: rv.ID == rq.rev}
	for _, l := range strings.Split(strings.TrimSuffix(rv.Diff, "\n"), "\n") {
		if l == "" && rv.Diff == "" {
			break
		}
		class := ""
		switch {
		case strings.HasPrefix(l, "+++"), strings.HasPrefix(l, "---"):
			class = "file"
		case strings.HasPrefix(l, "@@"):
			class = "hunk"
		case strings.HasPrefix(l, "+"):
			class = "add"
		case strings.HasPrefix(l, "-"):
			class = "del"
		}
		row.Diff = append(row.Diff, diffLine{class, l})
	}
	s.page(w, rq, http.StatusOK, "revision", "revisions", fmt.Sprintf("Revision %d", rv.ID), row, nil)
}

type confirmBody struct{ Message, Action, Button, Back string }

func (s *Server) revertConfirm(w http.ResponseWriter, r *http.Request, rq *request) {
	rv := s.revisionOf(w, r, rq)
	if rv == nil {
		return
	}
	path := fmt.Sprintf("/revisions/%d", rv.ID)
	s.page(w, rq, http.StatusOK, "confirm", "revisions", fmt.Sprintf("Revert to revision %d", rv.ID), confirmBody{
		Message: fmt.Sprintf("This operation will replace the current configuration with revision %d.", rv.ID),
		Action:  path + "/revert", Button: "Revert", Back: path,
	}, nil)
}

func (s *Server) revert(w http.ResponseWriter, r *http.Request, rq *request) {
	rv := s.revisionOf(w, r, rq)
	if rv == nil {
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		redirect(w, r, fmt.Sprintf("/revisions/%d/revert", rv.ID))
		return
	}
	if err := s.svc.Revert(rq.user, rv.ID); err != nil {
		s.fail(w, r, rq, http.StatusUnprocessableEntity, "The revision was not reverted: "+err.Error())
		return
	}
	s.event(r, rq, "config", fmt.Sprintf("configuration reverted to revision %d from the web UI", rv.ID))
	s.setFlash(rq.sess, fmt.Sprintf("Reverted to revision %d.", rv.ID))
	redirect(w, r, "/revisions")
}

// ---- logs ----

const maxLogCount = 5000

type logsBody struct {
	Log      string
	Query    string
	Count    int
	MaxCount int
	Total    int
	Events   []eventlog.Event
	History  []eventlog.History
}

// logs shows the newest records of the event or history log, like
// `diagnose log event|history [<count>] [<text>]`.
func (s *Server) logs(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	b := logsBody{Log: "event", Query: strings.TrimSpace(q.Get("q")), Count: 50, MaxCount: maxLogCount}
	if q.Get("log") == "history" {
		b.Log = "history"
	}
	if len(b.Query) > 200 {
		b.Query = b.Query[:200]
	}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && n > 0 {
		b.Count = min(n, maxLogCount)
	}
	lg := s.svc.Log()
	var err error
	if lg != nil {
		lg.Flush()
		if b.Log == "history" {
			f := eventlog.HistoryFilter{Limit: b.Count}
			if d, ok := strings.CutPrefix(b.Query, "disposition="); ok {
				f.Disposition = d
			} else {
				f.Contains = b.Query
			}
			b.History, err = lg.QueryHistory(f)
			slices.Reverse(b.History)
			b.Total = len(b.History)
		} else {
			b.Events, err = lg.Query(eventlog.Filter{Limit: b.Count, Contains: b.Query})
			slices.Reverse(b.Events)
			b.Total = len(b.Events)
		}
	}
	if err != nil {
		s.fail(w, r, rq, http.StatusInternalServerError, "The log cannot be read: "+err.Error())
		return
	}
	title := "Event log"
	if b.Log == "history" {
		title = "History log"
	}
	s.page(w, rq, http.StatusOK, "logs", "logs", title, b, nil)
}

// ---- mail queue ----

type queueBody struct {
	NoQueue  bool
	Messages []queue.Message
}

// mailQueue returns the queue; it answers r itself when there is none.
func (s *Server) mailQueue(w http.ResponseWriter, r *http.Request, rq *request) admin.MailQueue {
	q, err := s.svc.Queue()
	if err != nil {
		s.fail(w, r, rq, http.StatusServiceUnavailable, "No mail queue: the mail services are not running.")
		return nil
	}
	return q
}

func (s *Server) queueList(w http.ResponseWriter, r *http.Request, rq *request) {
	var b queueBody
	q, err := s.svc.Queue()
	if errors.Is(err, admin.ErrNoQueue) {
		b.NoQueue = true
	} else if err == nil {
		b.Messages, err = q.List()
	}
	if err != nil && !b.NoQueue {
		s.fail(w, r, rq, http.StatusInternalServerError, "The mail queue cannot be listed: "+err.Error())
		return
	}
	s.page(w, rq, http.StatusOK, "queue", "queue", "Mail queue", b, nil)
}

type messageBody struct {
	ID        string
	Msg       *queue.Message
	Text      string
	Truncated bool
	Shown     int
}

func (s *Server) queueView(w http.ResponseWriter, r *http.Request, rq *request) {
	q := s.mailQueue(w, r, rq)
	if q == nil {
		return
	}
	id := r.PathValue("id")
	m, err := q.Get(id)
	if err != nil {
		s.fail(w, r, rq, http.StatusNotFound, "There is no such message in the queue.")
		return
	}
	rc, _, err := q.Open(id)
	if err != nil {
		s.fail(w, r, rq, http.StatusNotFound, "The message cannot be opened: "+err.Error())
		return
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, maxViewBytes+1))
	if err != nil {
		s.fail(w, r, rq, http.StatusInternalServerError, "The message cannot be read: "+err.Error())
		return
	}
	b := messageBody{ID: id, Msg: m}
	if len(raw) > maxViewBytes {
		raw, b.Truncated, b.Shown = raw[:maxViewBytes], true, maxViewBytes
	}
	b.Text = strings.ToValidUTF8(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\uFFFD")
	s.page(w, rq, http.StatusOK, "message", "queue", "Message "+id, b, nil)
}

func (s *Server) queueDownload(w http.ResponseWriter, r *http.Request, rq *request) {
	q := s.mailQueue(w, r, rq)
	if q == nil {
		return
	}
	id := r.PathValue("id")
	rc, _, err := q.Open(id)
	if err != nil {
		s.fail(w, r, rq, http.StatusNotFound, "There is no such message in the queue.")
		return
	}
	defer rc.Close()
	s.svc.Event(eventlog.Information, "queue", rq.user, remoteString(remoteIP(r)), "message "+id+" downloaded")
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("Content-Disposition", `attachment; filename="`+fileSafe(id)+`.eml"`)
	io.Copy(w, rc)
}

func (s *Server) queueRetryAll(w http.ResponseWriter, r *http.Request, rq *request) {
	q := s.mailQueue(w, r, rq)
	if q == nil {
		return
	}
	if err := q.Retry(""); err != nil {
		s.fail(w, r, rq, http.StatusInternalServerError, "Retry failed: "+err.Error())
		return
	}
	s.event(r, rq, "queue", "retry requested for all")
	s.setFlash(rq.sess, "All messages are scheduled for delivery now.")
	redirect(w, r, "/queue")
}

func (s *Server) queueRetry(w http.ResponseWriter, r *http.Request, rq *request) {
	q := s.mailQueue(w, r, rq)
	if q == nil {
		return
	}
	id := r.PathValue("id")
	if err := q.Retry(id); err != nil {
		s.fail(w, r, rq, http.StatusNotFound, "Retry failed: "+err.Error())
		return
	}
	s.event(r, rq, "queue", "retry requested for "+id)
	s.setFlash(rq.sess, "Message "+id+" is scheduled for delivery now.")
	redirect(w, r, "/queue")
}

func (s *Server) queueDeleteConfirm(w http.ResponseWriter, r *http.Request, rq *request) {
	q := s.mailQueue(w, r, rq)
	if q == nil {
		return
	}
	id := r.PathValue("id")
	if _, err := q.Get(id); err != nil {
		s.fail(w, r, rq, http.StatusNotFound, "There is no such message in the queue.")
		return
	}
	path := "/queue/" + url.PathEscape(id)
	s.page(w, rq, http.StatusOK, "confirm", "queue", "Delete message "+id, confirmBody{
		Message: "This operation will delete message " + id + " from the queue; it will not be delivered.",
		Action:  path + "/delete", Button: "Delete", Back: path,
	}, nil)
}

func (s *Server) queueDelete(w http.ResponseWriter, r *http.Request, rq *request) {
	q := s.mailQueue(w, r, rq)
	if q == nil {
		return
	}
	id := r.PathValue("id")
	if r.PostFormValue("confirm") != "yes" {
		redirect(w, r, "/queue/"+url.PathEscape(id)+"/delete")
		return
	}
	if err := q.Delete(id); err != nil {
		s.fail(w, r, rq, http.StatusNotFound, "The message was not deleted: "+err.Error())
		return
	}
	s.event(r, rq, "queue", "message "+id+" deleted from the queue")
	s.setFlash(rq.sess, "Message "+id+" deleted.")
	redirect(w, r, "/queue")
}

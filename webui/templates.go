package webui

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// view is what the layout shows around every page.
type view struct {
	Title    string
	Host     string // the appliance's hostname
	User     string // "" before login
	ReadOnly bool
	Limited  bool // only the password page is reachable
	CSRF     string
	Nav      string
	Class    string // of <main>
	Flash    string
	Error    string
	Errors   []string // details of Error (validation errors with their paths)
	Body     any
}

type pageTemplate struct{ t *template.Template }

var funcs = template.FuncMap{
	"stamp": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"pathescape": url.PathEscape,
}

func parsePages() map[string]*pageTemplate {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*pageTemplate{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		t := template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n))
		pages[name] = &pageTemplate{t}
	}
	return pages
}

// render writes a page; the page is rendered completely before anything
// is sent, so that a template error is a clean 500.
func (s *Server) render(w http.ResponseWriter, status int, page string, v *view) {
	if v.Host == "" {
		c, _ := s.svc.Config()
		v.Host = c.System.Global.Hostname
	}
	var b bytes.Buffer
	if err := s.pages[page].t.ExecuteTemplate(&b, "layout", v); err != nil {
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// page renders a page of an authenticated request.
func (s *Server) page(w http.ResponseWriter, rq *request, status int, page, nav, title string, body any, v *view) {
	if v == nil {
		v = &view{}
	}
	v.Title, v.Nav, v.Body = title, nav, body
	v.Host = rq.cfg.System.Global.Hostname
	v.User, v.ReadOnly, v.CSRF = rq.user, rq.readOnly, rq.csrf
	if v.Flash == "" {
		v.Flash = s.takeFlash(rq.sess)
	}
	s.render(w, status, page, v)
}

// fail shows an error page to an authenticated admin.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, rq *request, status int, msg string) {
	back := "/status"
	if ref := r.Header.Get("Referer"); ref != "" {
		if u, err := url.Parse(ref); err == nil && u.Host == r.Host && strings.HasPrefix(u.Path, "/") {
			back = u.Path
		}
	}
	title := http.StatusText(status)
	s.page(w, rq, status, "error", "", title, back, &view{Error: msg})
}

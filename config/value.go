package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/bcrypt"
	gossh "golang.org/x/crypto/ssh"
)

// Env supplies what some values need beyond syntax: sealing secrets under
// the device key and checking certificates. A nil Env (or nil funcs)
// accepts sealed values as they are, which is what pure parsing needs.
type Env struct {
	Seal      func(plain []byte) (string, error)
	Open      func(token string) ([]byte, error)
	CheckCert func(chainPEM, keyPEM []byte) error
	// HashCost is the bcrypt cost for new passwords (0: bcrypt.DefaultCost).
	HashCost int
}

// parse turns the words after `set NAME` into the attribute's Go value.
func (a *Attr) parse(toks []Token, env *Env) (reflect.Value, error) {
	if len(toks) == 0 {
		return reflect.Value{}, &Error{Code: CodeParse, Msg: "command parse error before ''", Detail: a.Name + ": value missing, expected " + a.Syntax()}
	}
	single := func() (string, error) {
		if len(toks) > 1 {
			return "", parseErr(toks[1].Text)
		}
		return toks[0].Text, nil
	}
	var s string
	var err error
	switch a.Type {
	case TInt:
		if s, err = single(); err != nil {
			return reflect.Value{}, err
		}
		n, perr := strconv.Atoi(s)
		if perr != nil {
			return reflect.Value{}, valueErr(s, "%s: %q is not an integer", a.Name, s)
		}
		if n < a.Min || n > a.Max {
			return reflect.Value{}, valueErr(s, "%s: %d is out of range %d-%d", a.Name, n, a.Min, a.Max)
		}
		return reflect.ValueOf(n), nil
	case TBool:
		if s, err = single(); err != nil {
			return reflect.Value{}, err
		}
		v, ok := matchWord(s, []string{"enable", "disable"})
		if !ok {
			return reflect.Value{}, valueErr(s, "%s: expected enable or disable", a.Name)
		}
		if v == "enable" && a.Check == "off" {
			// A FortiMail switch for a feature mailgate does not have.
			return reflect.Value{}, valueErr(s, "%s: mailgate has no such feature; only disable", a.Name)
		}
		return reflect.ValueOf(v == "enable"), nil
	case TEnum:
		if s, err = single(); err != nil {
			return reflect.Value{}, err
		}
		v, ok := matchWord(s, a.Enum)
		if !ok {
			return reflect.Value{}, valueErr(s, "%s: expected one of %s", a.Name, strings.Join(a.Enum, ", "))
		}
		return reflect.ValueOf(v), nil
	case TEnumList:
		if len(toks) == 1 && toks[0].Quoted && toks[0].Text == "" {
			return reflect.ValueOf([]string(nil)), nil // set allowaccess "": none
		}
		seen := map[string]bool{}
		for _, t := range toks {
			v, ok := matchWord(t.Text, a.Enum)
			if !ok {
				return reflect.Value{}, valueErr(t.Text, "%s: expected some of %s", a.Name, strings.Join(a.Enum, ", "))
			}
			seen[v] = true
		}
		var out []string
		for _, e := range a.Enum { // canonical order
			if seen[e] {
				out = append(out, e)
			}
		}
		return reflect.ValueOf(out), nil
	case TStringList:
		var out []string
		for _, t := range toks {
			w, err := a.checkElem(t.Text)
			if err != nil {
				return reflect.Value{}, err
			}
			out = append(out, w)
		}
		return reflect.ValueOf(out), nil
	case TIP:
		if s, err = single(); err != nil {
			return reflect.Value{}, err
		}
		ip, perr := netip.ParseAddr(s)
		if perr != nil || ip.Zone() != "" {
			return reflect.Value{}, valueErr(s, "%s: %q is not an IP address", a.Name, s)
		}
		return reflect.ValueOf(ip.String()), nil
	case TPrefix:
		p, perr := parsePrefix(toks)
		if perr != nil {
			return reflect.Value{}, valueErr(toks[0].Text, "%s: %v", a.Name, perr)
		}
		return reflect.ValueOf(p), nil
	case TPassword:
		return a.parsePassword(toks, env)
	case TSecret:
		return a.parseSecret(toks, env)
	}
	// TString, TText, TRef
	if s, err = single(); err != nil {
		return reflect.Value{}, err
	}
	if a.Type == TText {
		// Until none is left: "\r\r\n" would otherwise keep a "\r\n",
		// which a configuration file does not read back.
		for strings.Contains(s, "\r\n") {
			s = strings.ReplaceAll(s, "\r\n", "\n")
		}
		s = strings.TrimRight(s, "\n \t")
	} else if strings.ContainsAny(s, "\n\r") {
		return reflect.Value{}, valueErr(s, "%s: line breaks are not allowed here", a.Name)
	}
	if err := a.check(s); err != nil {
		return reflect.Value{}, err
	}
	return reflect.ValueOf(s), nil
}

func (a *Attr) parsePassword(toks []Token, env *Env) (reflect.Value, error) {
	if len(toks) == 2 && toks[0].Text == "ENC" && !toks[0].Quoted {
		h := toks[1].Text
		if _, err := bcrypt.Cost([]byte(h)); err != nil || !bcryptRe.MatchString(h) {
			return reflect.Value{}, valueErr(h, "%s: not a password hash", a.Name)
		}
		return reflect.ValueOf(h), nil
	}
	if len(toks) > 1 {
		return reflect.Value{}, parseErr(toks[1].Text)
	}
	if err := CheckPasswordStrength(toks[0].Text); err != nil {
		return reflect.Value{}, valueErr("*", "%s: %v", a.Name, err)
	}
	h, err := HashPassword(toks[0].Text, env)
	if err != nil {
		return reflect.Value{}, err
	}
	return reflect.ValueOf(h), nil
}

func (a *Attr) parseSecret(toks []Token, env *Env) (reflect.Value, error) {
	if len(toks) == 2 && toks[0].Text == "ENC" && !toks[0].Quoted {
		t := toks[1].Text
		if env != nil && env.Open != nil {
			if _, err := env.Open(t); err != nil {
				return reflect.Value{}, valueErr("ENC", "%s: %v", a.Name, err)
			}
		}
		return reflect.ValueOf(t), nil
	}
	if len(toks) > 1 {
		return reflect.Value{}, parseErr(toks[1].Text)
	}
	if env == nil || env.Seal == nil {
		return reflect.Value{}, valueErr(toks[0].Text, "%s: cannot store a secret here", a.Name)
	}
	t, err := env.Seal([]byte(toks[0].Text))
	if err != nil {
		return reflect.Value{}, err
	}
	return reflect.ValueOf(t), nil
}

// HashPassword returns the bcrypt hash stored for password.
func HashPassword(password string, env *Env) (string, error) {
	cost := bcrypt.DefaultCost
	if env != nil && env.HashCost != 0 {
		cost = env.HashCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	return string(h), err
}

// CheckPasswordStrength refuses passwords an appliance must not accept:
// at least 8 characters with three of lower case, upper case, digits and
// symbols, or a passphrase of 14 characters or more.
func CheckPasswordStrength(p string) error {
	n := len([]rune(p))
	if n < 8 {
		return fmt.Errorf("password too short: at least 8 characters")
	}
	if n > 128 {
		return fmt.Errorf("password too long: at most 128 characters")
	}
	var lower, upper, digit, other int
	for _, r := range p {
		switch {
		case unicode.IsLower(r):
			lower = 1
		case unicode.IsUpper(r):
			upper = 1
		case unicode.IsDigit(r):
			digit = 1
		default:
			other = 1
		}
	}
	if lower+upper+digit+other < 3 && n < 14 {
		return fmt.Errorf("password too weak: use three of lower case, upper case, digits and symbols, or 14 characters or more")
	}
	if strings.Count(p, string([]rune(p)[0])) == n {
		return fmt.Errorf("password too weak: one repeated character")
	}
	return nil
}

func parsePrefix(toks []Token) (string, error) {
	switch len(toks) {
	case 1:
		s := toks[0].Text
		if !strings.Contains(s, "/") {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return "", fmt.Errorf("%q is not an address/prefix", s)
			}
			return netip.PrefixFrom(ip, ip.BitLen()).String(), nil
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", fmt.Errorf("%q is not an address/prefix", s)
		}
		return p.String(), nil
	case 2:
		ip, err1 := netip.ParseAddr(toks[0].Text)
		mask, err2 := netip.ParseAddr(toks[1].Text)
		if err1 != nil || err2 != nil || !ip.Is4() || !mask.Is4() {
			return "", fmt.Errorf("expected address/prefix or IPv4 address and netmask")
		}
		m := mask.As4()
		bits := 0
		v := uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
		for v&0x80000000 != 0 {
			bits++
			v <<= 1
		}
		if v != 0 {
			return "", fmt.Errorf("%s is not a contiguous netmask", toks[1].Text)
		}
		return netip.PrefixFrom(ip, bits).String(), nil
	}
	return "", fmt.Errorf("too many words")
}

// matchWord resolves word against choices: an exact match, else a unique
// prefix.
func matchWord(word string, choices []string) (string, bool) {
	m := Matches(word, choices)
	if len(m) == 1 {
		return m[0], true
	}
	return "", false
}

// Matches returns the choices word selects: itself when it is one of them,
// else every choice it is a prefix of.
func Matches(word string, choices []string) []string {
	if word == "" {
		return nil // an empty word selects nothing, not everything
	}
	var out []string
	for _, c := range choices {
		if c == word {
			return []string{c}
		}
		if strings.HasPrefix(c, word) {
			out = append(out, c)
		}
	}
	return out
}

var (
	labelRe    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	usernameRe = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)
	// An RFC 5321 dot-string local part (no quoted strings), not starting
	// or ending with a dot, no two dots in a row.
	localpartRe = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
	ifnameRe    = regexp.MustCompile(`^[a-z0-9_.-]{1,15}$`)
	// bcryptRe is the whole of a bcrypt hash; bcrypt.Cost reads only its
	// prefix and length.
	bcryptRe = regexp.MustCompile(`^\$2[a-z]?\$[0-9]{2}\$[./A-Za-z0-9]{53}$`)
)

func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !labelRe.MatchString(l) {
			return false
		}
	}
	return true
}

// checkElem applies the attribute's extra check to one element of a list
// and returns the element as stored. A list of prefixes ("prefix") takes
// each element as address/prefix (a bare address is a host prefix) and
// stores it in canonical form. An empty key or prefix is refused (`unset`
// clears the list); other lists keep accepting empty words, as stored
// configurations may hold them.
func (a *Attr) checkElem(s string) (string, error) {
	if s == "" && (a.Check == "prefix" || a.Check == "authkey") {
		return "", valueErr(s, "%s: an empty element; unset %s clears the list", a.Name, a.Name)
	}
	if a.Check != "prefix" {
		return s, a.check(s)
	}
	if strings.Contains(s, "%") {
		return "", valueErr(s, "%s: element %q is not an IPv4 or IPv6 prefix (a zone is not allowed)", a.Name, s)
	}
	if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() && isNetmask(ip) {
		return "", valueErr(s, "%s: element %q is a netmask: write each network as address/prefix, e.g. 192.0.2.0/24", a.Name, s)
	}
	p, err := parsePrefix([]Token{{Text: s}})
	if err != nil {
		return "", valueErr(s, "%s: element %q is not an IPv4 or IPv6 prefix (e.g. 192.0.2.0/24 or 2001:db8::/32)", a.Name, s)
	}
	return p, nil
}

// isNetmask reports whether an IPv4 address reads as a netmask
// (255.255.255.0, 255.0.0.0, 0.0.0.0), not as a host.
func isNetmask(ip netip.Addr) bool {
	m := ip.As4()
	v := uint32(m[0])<<24 | uint32(m[1])<<16 | uint32(m[2])<<8 | uint32(m[3])
	return v == 0 || (m[0] == 255 && v|(v-1) == ^uint32(0)) || v == ^uint32(0)
}

// check applies the attribute's extra check to one word.
func (a *Attr) check(s string) error {
	if s == "" {
		return nil
	}
	bad := func(why string) error { return valueErr(s, "%s: %s", a.Name, why) }
	switch a.Check {
	case "hostname", "domain":
		if !isDNSName(s) {
			return bad("not a valid DNS name")
		}
	case "host":
		if _, err := netip.ParseAddr(s); err != nil && !isDNSName(s) {
			return bad("not a host name or IP address")
		}
	case "username":
		if !usernameRe.MatchString(s) {
			return bad("use letters, digits and _ . @ - (at most 64)")
		}
	case "localpart":
		if len(s) > 64 || !localpartRe.MatchString(s) {
			return bad("the part of an address before @: letters, digits and ! # $ % & ' * + - / = ? ^ _ ` { | } ~ . (at most 64)")
		}
	case "ifname":
		if !ifnameRe.MatchString(s) {
			return bad("not an interface name")
		}
	case "objname":
		if len(s) > 63 || strings.ContainsAny(s, "\"'\\\n\r\t") {
			return bad("names are at most 63 characters, without quotes, backslashes or line breaks")
		}
	case "authkey":
		if _, _, _, _, err := gossh.ParseAuthorizedKey([]byte(s)); err != nil {
			return bad("not an SSH public key in authorized_keys format")
		}
	case "email":
		local, domain, ok := strings.Cut(s, "@")
		if !ok || local == "" || strings.ContainsAny(local, " \t\r\n\"<>()[]\\,;:@") || !isDNSName(domain) {
			return bad("not an email address (local@domain)")
		}
	case "timezone":
		if _, err := time.LoadLocation(s); err != nil {
			return bad("unknown time zone")
		}
	case "token":
		if strings.ContainsAny(s, " \t\r\n\"'\\") {
			return bad("no spaces, quotes or backslashes")
		}
	case "hostpattern":
		h := s
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		} else {
			h = strings.TrimPrefix(h, ".")
		}
		if !isDNSName(h) {
			return bad("expected example.com, .example.com or [mx.example.com]")
		}
	}
	return nil
}

// format renders a value for `set NAME <value>`; ok is false for an empty
// value (nothing to set).
func (a *Attr) format(v reflect.Value) (string, bool) {
	switch a.Type {
	case TInt:
		return strconv.Itoa(int(v.Int())), true
	case TBool:
		if v.Bool() {
			return "enable", true
		}
		return "disable", true
	case TEnumList, TStringList:
		if v.Len() == 0 {
			return "", false
		}
		words := make([]string, v.Len())
		for i := range words {
			words[i] = v.Index(i).String()
			if a.Type == TStringList && a.Check != "prefix" {
				words[i] = Quote(words[i])
			}
		}
		return strings.Join(words, " "), true
	}
	s := v.String()
	if s == "" {
		return "", false
	}
	switch a.Type {
	case TEnum, TIP, TPrefix:
		return s, true
	case TPassword:
		return "ENC " + s, true
	case TSecret:
		// Sealed tokens are taken as they are when there is no Env to
		// open them; quote those that would not read back as one word.
		if toks, open := SplitLine(s); open || len(toks) != 1 || toks[0].Text != s {
			return "ENC " + Quote(s), true
		}
		return "ENC " + s, true
	}
	return Quote(s), true
}

// defaultValue is the factory value of the attribute.
func (a *Attr) defaultValue() reflect.Value {
	a.defOnce.Do(func() { a.def = a.parseDefault() })
	return copyValue(a.def)
}

// copyValue copies list values, so that trees never share list memory.
func copyValue(v reflect.Value) reflect.Value {
	if v.Kind() != reflect.Slice || v.IsNil() {
		return v
	}
	return reflect.ValueOf(append([]string(nil), v.Interface().([]string)...))
}

func (a *Attr) parseDefault() reflect.Value {
	if a.Default == "" {
		switch a.goKind {
		case reflect.Int:
			return reflect.ValueOf(0)
		case reflect.Bool:
			return reflect.ValueOf(false)
		case reflect.Slice:
			return reflect.ValueOf([]string(nil))
		}
		return reflect.ValueOf("")
	}
	toks, _ := SplitLine(a.Default)
	v, err := a.parse(toks, nil)
	if err != nil {
		panic("config: bad default for " + a.Name + ": " + err.Error())
	}
	return v
}

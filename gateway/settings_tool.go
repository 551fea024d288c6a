package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/wagateway/wagateway/whatsapp"
)

// Calling settings as code, outside a running gateway (wagateway settings
// show|diff|apply): the numbers' calling: sections against Meta's
// settings, with the config's whatsapp section and its access token.

// SettingsGraph is what the settings need of the Graph API (R1–R3);
// *whatsapp.GraphClient has it.
type SettingsGraph interface {
	GetCallingSettings(ctx context.Context, phoneNumberID string, includeSIPCredentials bool) (*whatsapp.CallingSettings, error)
	UpdateCallingSettings(ctx context.Context, phoneNumberID string, s whatsapp.CallingSettings) error
	UploadVoicemailAnnouncement(ctx context.Context, phoneNumberID, filename string, ogg io.Reader) (mediaID string, err error)
}

var _ SettingsGraph = (*whatsapp.GraphClient)(nil)

// SettingsOptions adjust NewSettingsClient.
type SettingsOptions struct {
	// Graph answers the requests; nil: a GraphClient from the config's
	// whatsapp section and access token.
	Graph SettingsGraph
	// Now is the clock of the past-holiday rule and of the state file's
	// upload times (default time.Now).
	Now func() time.Time
}

// SettingsClient reads, compares and applies the numbers' calling settings.
type SettingsClient struct {
	cfg   *Config
	graph SettingsGraph
	now   func() time.Time
	state *callingState
}

// NewSettingsClient resolves whatsapp.access_token (and no other secret)
// unless o.Graph is given; an error is a *ConfigError.
func NewSettingsClient(cfg *Config, o SettingsOptions) (*SettingsClient, error) {
	c := &SettingsClient{cfg: cfg, graph: o.Graph, now: o.Now}
	if c.now == nil {
		c.now = time.Now
	}
	if c.graph == nil {
		token, err := cfg.WhatsApp.AccessToken.Resolve()
		if err == nil && token == "" {
			err = errors.New("no value")
		}
		if err != nil {
			return nil, &ConfigError{Problems: []string{"whatsapp.access_token: " + err.Error()}}
		}
		c.graph = whatsapp.NewGraphClient(whatsapp.GraphConfig{
			BaseURL:     cfg.WhatsApp.GraphBaseURL,
			Version:     cfg.WhatsApp.APIVersion,
			AccessToken: token,
			Timeout:     cfg.WhatsApp.GraphTimeout,
		})
	}
	return c, nil
}

// Check is CheckCalling at the client's clock: what must hold before
// anything is sent.
func (c *SettingsClient) Check() error { return c.cfg.CheckCalling(c.now()) }

// SettingsNumbers lists the numbers to act on: every number of the config
// (managed: only those with calling:), or the one named by only. The error
// (a *ConfigError) says only is not such a number, or there is none.
func (c *Config) SettingsNumbers(only string, managed bool) ([]string, error) {
	var out []string
	for _, n := range c.Numbers {
		if managed && n.Calling == nil {
			continue
		}
		if only == "" || n.PhoneNumberID == only {
			out = append(out, n.PhoneNumberID)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	what := "numbers[]"
	if managed {
		what = "numbers[] with calling:"
	}
	if only != "" {
		return nil, &ConfigError{Problems: []string{fmt.Sprintf("-number: %q is not in the config's %s", only, what)}}
	}
	return nil, &ConfigError{Problems: []string{"numbers: none in the config's " + what}}
}

func (c *Config) number(pnid string) (int, NumberConfig, bool) {
	for i, n := range c.Numbers {
		if n.PhoneNumberID == pnid {
			return i, n, true
		}
	}
	return 0, NumberConfig{}, false
}

// Show reads a number's settings from Meta. Without sipCredentials the
// SIP password is neither asked for nor shown; with it, Meta's answer is
// returned as it is, password included.
func (c *SettingsClient) Show(ctx context.Context, pnid string, sipCredentials bool) (whatsapp.CallingSettings, error) {
	s, err := c.graph.GetCallingSettings(ctx, pnid, sipCredentials)
	if err != nil {
		return whatsapp.CallingSettings{}, err
	}
	if s == nil {
		s = &whatsapp.CallingSettings{}
	}
	if sipCredentials {
		return *s, nil
	}
	return s.Masked(), nil
}

// SettingsPlan is what apply would do for one number.
type SettingsPlan struct {
	PhoneNumberID string
	// Changes are the diff's lines, one per field that differs; none: in step.
	Changes []string
	field   string
	plan    *callingPlan
	ann     *announcement
}

// Drift reports whether Meta's settings differ from the file's.
func (p *SettingsPlan) Drift() bool { return len(p.Changes) > 0 }

// Plan compares a number's calling: section with Meta's settings. Run
// Check first. The error is a *ConfigError for what is wrong locally (the
// announcement file, a rule broken once merged with Meta's settings), else
// the Graph request's.
func (c *SettingsClient) Plan(ctx context.Context, pnid string) (*SettingsPlan, error) {
	i, n, ok := c.cfg.number(pnid)
	if !ok || n.Calling == nil {
		return nil, &ConfigError{Problems: []string{fmt.Sprintf("numbers: %s has no calling: section", pnid)}}
	}
	f := fmt.Sprintf("numbers[%d].calling", i)
	var ann *announcement
	if file := n.Calling.announcementFile(); file != "" {
		a, err := readAnnouncement(file)
		if err != nil {
			return nil, &ConfigError{Problems: []string{f + ".voicemail.announcement_file: " + err.Error()}}
		}
		ann = a
	}
	state, err := c.loadState()
	if err != nil {
		return nil, err
	}
	have, err := c.graph.GetCallingSettings(ctx, pnid, false)
	if err != nil {
		return nil, err
	}
	plan, err := planCalling(f, n.Calling, have, ann.check(state.Numbers[pnid]))
	if err != nil {
		return nil, err
	}
	return &SettingsPlan{PhoneNumberID: pnid, Changes: plan.lines, field: f, plan: plan, ann: ann}, nil
}

// announcementFile is the voicemail announcement the file names ("": none).
func (cc *CallingConfig) announcementFile() string {
	if cc.Voicemail == nil {
		return ""
	}
	return cc.Voicemail.AnnouncementFile
}

// check is the announcement against its number's last recorded upload;
// nil when there is no announcement.
func (a *announcement) check(last *AnnouncementRecord) *AnnouncementCheck {
	if a == nil {
		return nil
	}
	return &AnnouncementCheck{File: a.path, SHA256: a.sha256, Last: last}
}

// SettingsApplied is what Apply did.
type SettingsApplied struct {
	// MediaID is the uploaded announcement's ("": none uploaded).
	MediaID string
	// Remaining are the differences left after apply, read back from Meta
	// (none when Meta took everything).
	Remaining []string
	// StateError: the upload could not be recorded in calling_state_file
	// (the next diff shows the announcement again).
	StateError error
}

// Apply carries out a plan with drift: the announcement upload first (R3),
// then the settings with its media id (R1); the upload is recorded in
// calling_state_file; Meta's settings are then read back and compared again.
func (c *SettingsClient) Apply(ctx context.Context, p *SettingsPlan) (SettingsApplied, error) {
	var res SettingsApplied
	if !p.Drift() {
		return res, nil
	}
	body := p.plan.body
	if p.plan.upload {
		id, err := c.graph.UploadVoicemailAnnouncement(ctx, p.PhoneNumberID, filepath.Base(p.ann.path), bytes.NewReader(p.ann.data))
		if err != nil {
			return res, fmt.Errorf("voicemail announcement upload: %w", err)
		}
		if id == "" {
			return res, errors.New("voicemail announcement upload: Meta answered no media id")
		}
		res.MediaID = id
		vp := voicemailPrompt(body.Voicemail)
		vp.AnnouncementMediaID = id
		v := *body.Voicemail
		v.Audio = &whatsapp.VoicemailAudio{Default: &vp}
		body.Voicemail = &v
	}
	if err := c.graph.UpdateCallingSettings(ctx, p.PhoneNumberID, body); err != nil {
		return res, fmt.Errorf("settings update: %w", err)
	}
	if res.MediaID != "" {
		res.StateError = c.record(p.PhoneNumberID, AnnouncementRecord{File: p.ann.path, SHA256: p.ann.sha256, MediaID: res.MediaID, Uploaded: c.now().UTC()})
	}
	again, err := c.Plan(ctx, p.PhoneNumberID)
	if err != nil {
		return res, fmt.Errorf("reading the settings back: %w", err)
	}
	res.Remaining = again.Changes
	return res, nil
}

// callingState is calling_state_file: per number, the last announcement
// uploaded.
type callingState struct {
	Numbers map[string]*AnnouncementRecord `json:"numbers"`
}

// loadCallingState reads the state file; a missing one is empty.
func loadCallingState(path string) (*callingState, error) {
	st := &callingState{Numbers: map[string]*AnnouncementRecord{}}
	if path == "" {
		return st, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, &ConfigError{Problems: []string{"calling_state_file: " + err.Error()}}
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, &ConfigError{Problems: []string{fmt.Sprintf("calling_state_file: %s is not the state wagateway writes: %v", path, err)}}
	}
	if st.Numbers == nil {
		st.Numbers = map[string]*AnnouncementRecord{}
	}
	return st, nil
}

func (c *SettingsClient) loadState() (*callingState, error) {
	if c.state != nil {
		return c.state, nil
	}
	st, err := loadCallingState(c.cfg.CallingStateFile)
	if err != nil {
		return nil, err
	}
	c.state = st
	return st, nil
}

// record saves a number's upload in the state file (written whole to a
// temporary file, then renamed over it).
func (c *SettingsClient) record(pnid string, r AnnouncementRecord) error {
	st, err := c.loadState()
	if err != nil {
		return err
	}
	st.Numbers[pnid] = &r
	path := c.cfg.CallingStateFile
	if path == "" {
		return errors.New("calling_state_file: not set; the upload is not recorded")
	}
	b, err := json.MarshalIndent(st, "", "  ") // numbers sorted
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("calling_state_file: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("calling_state_file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("calling_state_file: %w", err)
	}
	return nil
}

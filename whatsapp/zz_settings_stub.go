// Stub until the whatsapp branch lands: delete on merge.

package whatsapp

import (
	"context"
	"errors"
	"io"
)

// CallingSettings is the "calling" object of POST/GET /{PNID}/settings.
type CallingSettings struct {
	Status                   string             `json:"status,omitempty"`
	CallIconVisibility       string             `json:"call_icon_visibility,omitempty"`
	CallIcons                *CallIcons         `json:"call_icons,omitempty"`
	CallHours                *CallHours         `json:"call_hours,omitempty"`
	CallbackPermissionStatus string             `json:"callback_permission_status,omitempty"`
	SRTPKeyExchangeProtocol  string             `json:"srtp_key_exchange_protocol,omitempty"`
	Audio                    *AudioSettings     `json:"audio,omitempty"`
	Voicemail                *VoicemailSettings `json:"voicemail,omitempty"`
	SIP                      *SIPSettings       `json:"sip,omitempty"`
	Restrictions             *Restrictions      `json:"restrictions,omitempty"`
}

type CallIcons struct {
	RestrictToUserCountries []string `json:"restrict_to_user_countries"`
}

type CallHours struct {
	Status               string        `json:"status,omitempty"`
	TimezoneID           string        `json:"timezone_id,omitempty"`
	WeeklyOperatingHours []WeeklyHours `json:"weekly_operating_hours,omitempty"`
	HolidaySchedule      []Holiday     `json:"holiday_schedule,omitempty"`
}

type WeeklyHours struct {
	DayOfWeek string `json:"day_of_week"`
	OpenTime  string `json:"open_time"`
	CloseTime string `json:"close_time"`
}

type Holiday struct {
	Date      string `json:"date"`
	StartTime string `json:"start_time"`
	EndTime   string `json:"end_time"`
}

type AudioSettings struct {
	AdditionalCodecs []string `json:"additional_codecs"`
}

type VoicemailSettings struct {
	Status   string          `json:"status,omitempty"`
	Triggers []string        `json:"triggers,omitempty"`
	Audio    *VoicemailAudio `json:"audio,omitempty"`
}

type VoicemailAudio struct {
	Default *VoicemailPrompt `json:"default,omitempty"`
}

type VoicemailPrompt struct {
	AnnouncementMediaID string `json:"announcement_media_id,omitempty"`
	TimeoutSeconds      int    `json:"timeout_seconds,omitempty"`
}

type SIPSettings struct {
	Status  string      `json:"status,omitempty"`
	Servers []SIPServer `json:"servers,omitempty"`
}

type SIPServer struct {
	Hostname             string            `json:"hostname,omitempty"`
	Port                 int               `json:"port,omitempty"`
	RequestURIUserParams map[string]string `json:"request_uri_user_params,omitempty"`
	AppID                string            `json:"app_id,omitempty"`
	SIPUserPassword      string            `json:"sip_user_password,omitempty"`
}

type Restrictions struct {
	RestrictionsList []Restriction `json:"restrictions_list,omitempty"`
}

type Restriction struct {
	Type       string `json:"type,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Expiration string `json:"expiration,omitempty"`
}

// Masked is s with every SIP password replaced.
func (s CallingSettings) Masked() CallingSettings {
	if s.SIP == nil {
		return s
	}
	sip := *s.SIP
	sip.Servers = append([]SIPServer(nil), s.SIP.Servers...)
	for i := range sip.Servers {
		if sip.Servers[i].SIPUserPassword != "" {
			sip.Servers[i].SIPUserPassword = "********"
		}
	}
	s.SIP = &sip
	return s
}

var errSettingsStub = errors.New("not implemented")

func (c *GraphClient) GetCallingSettings(ctx context.Context, phoneNumberID string, includeSIPCredentials bool) (*CallingSettings, error) {
	return nil, errSettingsStub
}

func (c *GraphClient) UpdateCallingSettings(ctx context.Context, phoneNumberID string, s CallingSettings) error {
	return errSettingsStub
}

func (c *GraphClient) UploadVoicemailAnnouncement(ctx context.Context, phoneNumberID, filename string, ogg io.Reader) (mediaID string, err error) {
	return "", errSettingsStub
}

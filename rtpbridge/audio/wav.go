package audio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// ReadWAV reads a 16-bit PCM WAV file, keeping the first channel.
func ReadWAV(path string) (pcm []int16, sampleRate int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	return ParseWAV(b)
}

// ParseWAV parses a RIFF/WAVE image of 16-bit PCM, walking its chunks.
func ParseWAV(b []byte) (pcm []int16, sampleRate int, err error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, errors.New("wav: not a RIFF/WAVE file")
	}
	var channels, bits int
	for off := 12; off+8 <= len(b); {
		id := string(b[off : off+4])
		size := int(binary.LittleEndian.Uint32(b[off+4 : off+8]))
		body := b[off+8:]
		if size > len(body) {
			size = len(body) // a writer killed mid-call leaves the size short or unset
		}
		switch id {
		case "fmt ":
			if size < 16 {
				return nil, 0, errors.New("wav: short fmt chunk")
			}
			if format := binary.LittleEndian.Uint16(body[0:2]); format != 1 && format != 0xfffe {
				return nil, 0, fmt.Errorf("wav: format %d is not PCM", format)
			}
			channels = int(binary.LittleEndian.Uint16(body[2:4]))
			sampleRate = int(binary.LittleEndian.Uint32(body[4:8]))
			bits = int(binary.LittleEndian.Uint16(body[14:16]))
		case "data":
			if bits != 16 || channels < 1 {
				return nil, 0, fmt.Errorf("wav: %d-bit %d-channel audio, want 16-bit PCM", bits, channels)
			}
			frame := 2 * channels
			n := size / frame
			pcm = make([]int16, n)
			for i := 0; i < n; i++ {
				pcm[i] = int16(binary.LittleEndian.Uint16(body[i*frame:]))
			}
			return pcm, sampleRate, nil
		}
		off += 8 + size + size%2
	}
	return nil, 0, errors.New("wav: no data chunk")
}

// WriteWAV writes mono 16-bit PCM as a WAV file.
func WriteWAV(w io.Writer, pcm []int16, sampleRate int) error {
	return WriteWAVChannels(w, pcm, sampleRate, 1)
}

// WriteWAVChannels writes 16-bit PCM as a WAV file of that many channels,
// each carrying the same samples.
func WriteWAVChannels(w io.Writer, mono []int16, sampleRate, channels int) error {
	if channels < 1 {
		return fmt.Errorf("wav: %d channels", channels)
	}
	pcm := mono
	if channels > 1 {
		pcm = make([]int16, len(mono)*channels)
		for i, s := range mono {
			for c := 0; c < channels; c++ {
				pcm[i*channels+c] = s
			}
		}
	}
	hdr := make([]byte, 44)
	copy(hdr[0:], "RIFF")
	binary.LittleEndian.PutUint32(hdr[4:], uint32(36+2*len(pcm)))
	copy(hdr[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(hdr[16:], 16)
	binary.LittleEndian.PutUint16(hdr[20:], 1)
	binary.LittleEndian.PutUint16(hdr[22:], uint16(channels))
	binary.LittleEndian.PutUint32(hdr[24:], uint32(sampleRate))
	binary.LittleEndian.PutUint32(hdr[28:], uint32(2*channels*sampleRate)) // bytes per second
	binary.LittleEndian.PutUint16(hdr[32:], uint16(2*channels))
	binary.LittleEndian.PutUint16(hdr[34:], 16)
	copy(hdr[36:], "data")
	binary.LittleEndian.PutUint32(hdr[40:], uint32(2*len(pcm)))
	body := make([]byte, 2*len(pcm))
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(body[2*i:], uint16(s))
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

package edge

import (
	"testing"
	"time"

	"github.com/caregrid/caregrid/edge/ratelimit"
)

func TestParseLimit(t *testing.T) {
	for in, want := range map[string]ratelimit.Limit{
		"50/s": {Rate: 50, Burst: 100, Period: time.Second},
		"10/m": {Rate: 10, Burst: 20, Period: time.Minute},
		"1/h":  {Rate: 1, Burst: 2, Period: time.Hour},
		"0":    {},
		"off":  {},
	} {
		got, err := ParseLimit(in)
		if err != nil || got != want {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "50", "50/d", "-1/s", "x/s", "0/s"} {
		if _, err := ParseLimit(bad); err == nil {
			t.Errorf("ParseLimit(%q) accepted", bad)
		}
	}
}

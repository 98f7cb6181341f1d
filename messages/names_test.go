package messages

import (
	"regexp"
	"testing"
)

// Every audit action has one stored spelling, in one style, that reads
// back as itself; the unspecified one has none.
func TestAuditActionsHaveOneSpelling(t *testing.T) {
	kebab := regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)
	seen := map[string]AuditAction{}
	for v := range AuditAction_name {
		a := AuditAction(v)
		if a == AuditAction_AUDIT_ACTION_UNSPECIFIED {
			if a.Name() != "" {
				t.Errorf("the unspecified action is spelt %q", a.Name())
			}
			continue
		}
		n := a.Name()
		if !kebab.MatchString(n) {
			t.Errorf("%v is spelt %q, not lower-case words joined by hyphens", a, n)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("%v and %v are both spelt %q", a, other, n)
		}
		seen[n] = a
		if back, ok := ParseAuditAction(n); !ok || back != a {
			t.Errorf("%q reads back as %v, %v", n, back, ok)
		}
	}
	if got := AuditAction_AUDIT_ACTION_READ_ACCESS_LOG.Name(); got != "read-access-log" {
		t.Errorf("read-access-log is spelt %q", got)
	}
	if _, ok := ParseAuditAction("check_in"); ok {
		t.Error("an old spelling reads as an action")
	}
}

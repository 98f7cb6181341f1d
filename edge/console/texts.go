package console

import "github.com/caregrid/caregrid/edge/locale"

// scriptTexts are the texts the console's script shows, by the keys it
// asks for them with (t('key') in app.js), in the page's language. Values
// the API answers with (a status, a role, an outcome) are keys too.
func scriptTexts(tx locale.Texts) map[string]string {
	return map[string]string{
		// Signing in and out.
		"signInFailed":      tx.T("The sign-in did not finish. Reload the page to sign in again."),
		"signInUnavailable": tx.T("The sign-in service does not answer. Retry in a moment."),
		"signingIn":         tx.T("Signing in…"),
		// The cluster.
		"up": tx.T("up"), "down": tx.T("down"), "unreachable": tx.T("unreachable"),
		"membersUp": tx.T("Members up"), "membersDown": tx.T("Members down or silent"),
		"lastSeen": tx.T("last seen"), "memberId": tx.T("Member id"), "startedAt": tx.T("Started"),
		"statRequests": tx.T("Requests per second"), "statErrors": tx.T("Server errors per second"),
		"statP99": tx.T("99th percentile answer time"), "statGrainRequests": tx.T("Grain requests per second"),
		"statGrainUnavailable":     tx.T("Grain requests unanswered per second"),
		"statAuditPending":         tx.T("Audit events waiting to be chained"),
		"statAuditLag":             tx.T("Age of the oldest waiting audit event"),
		"statOutboxLag":            tx.T("Read models behind by"),
		"statNotificationsWaiting": tx.T("Notifications waiting"), "statNotificationsDead": tx.T("Notifications undelivered"),
		"statBreakersOpen": tx.T("Notification channels paused"), "statPoolInUse": tx.T("Database connections in use"),
		"statPoolMax": tx.T("Database connections allowed"), "statMembersSeen": tx.T("Members it sees"),
		"statGoroutines": tx.T("Goroutines"), "statMemory": tx.T("Memory in use"),
		"ms": tx.T("ms"), "s": tx.T("s"), "min": tx.T("min"), "h": tx.T("h"), "d": tx.T("d"),
		// Accounts.
		"patient": tx.T("patient"), "doctor": tx.T("doctor"), "receptionist": tx.T("receptionist"), "admin": tx.T("admin"),
		"service": tx.T("service"), "public": tx.T("public"), "confidential": tx.T("confidential"),
		"active": tx.T("active"), "disabled": tx.T("disabled"), "locked": tx.T("locked"),
		"awaitingPassword": tx.T("awaiting a password"), "enrolled": tx.T("enrolled"), "notEnrolled": tx.T("none"),
		"enable": tx.T("Enable"), "disable": tx.T("Disable"), "unlock": tx.T("Unlock"),
		"resetTOTP": tx.T("Reset the second factor"), "sendReset": tx.T("Send a password link"),
		"accountCreated": tx.T("Account created: its owner gets an email link to choose a password."),
		"accountEnabled": tx.T("Account enabled."), "accountDisabled": tx.T("Account disabled: its sessions are ended."),
		"accountUnlocked": tx.T("Account unlocked."), "totpReset": tx.T("Second factor removed: the next sign-in enrols a new one."),
		"resetSent": tx.T("A password link is on its way to the account's email."),
		// Clinics, doctors, clients.
		"edit": tx.T("Edit"), "editClinic": tx.T("Edit the clinic"), "createClinic": tx.T("Create a clinic"),
		"clinicSaved": tx.T("Clinic saved."), "doctorSaved": tx.T("Doctor saved."),
		"editDoctor": tx.T("Edit the doctor"), "createDoctor": tx.T("Create a doctor"), "roles": tx.T("Roles"),
		"workingHours": tx.T("Working hours"), "hoursSaved": tx.T("Working hours saved."),
		"monday": tx.T("Monday"), "tuesday": tx.T("Tuesday"), "wednesday": tx.T("Wednesday"), "thursday": tx.T("Thursday"),
		"friday": tx.T("Friday"), "saturday": tx.T("Saturday"), "sunday": tx.T("Sunday"),
		"clientCreated": tx.T("Client registered. Copy its secret now: it is not shown again."),
		// Reviews.
		"note": tx.T("Note"), "approve": tx.T("Approve"), "flag": tx.T("Flag"), "refuse": tx.T("Refuse"),
		"decisionRecorded": tx.T("Decision recorded."), "retry": tx.T("Send again"), "retried": tx.T("The notification is queued again."),
		"email": tx.T("email"), "sms": tx.T("SMS"), "push": tx.T("push"),
		"pending": tx.T("pending"), "approved": tx.T("approved"), "refused": tx.T("refused"), "erased": tx.T("erased"),
		// The audit trail.
		"success": tx.T("success"), "denied": tx.T("denied"), "failed": tx.T("failed"),
		"running": tx.T("running"), "intact": tx.T("intact"), "broken": tx.T("broken"),
		"schedule": tx.T("the schedule"), "latestCheck": tx.T("Latest check"), "neverChecked": tx.T("The trail has not been checked yet."),
		"checkStarted": tx.T("The check has started; its result shows below."), "eventsShown": tx.T("Events shown"),
		"downloaded": tx.T("Downloaded."),
		// Analytics.
		"appointments": tx.T("Appointments"), "completed": tx.T("Completed"), "cancelled": tx.T("Cancelled"), "noShows": tx.T("No-shows"),
	}
}

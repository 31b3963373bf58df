package main

import (
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, exitOK, "usage: vbdemo"},
		{[]string{"extra"}, exitUsage, "usage: vbdemo"},
		{[]string{"--no-such-flag"}, exitUsage, "flag provided but not defined"},
	} {
		var stdout, stderr strings.Builder
		if code := run(c.args, &stdout, &stderr); code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("vbdemo %v: exit %d, stderr %q; want %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}

func TestMatchesAll(t *testing.T) {
	rec := map[string]string{"VIRTBRIDGE_UUID": "u1", "MESSAGE_ID": "m"}
	for _, c := range []struct {
		matches []string
		want    bool
	}{
		{nil, true},
		{[]string{"VIRTBRIDGE_UUID=u1"}, true},
		{[]string{"VIRTBRIDGE_UUID=u1", "MESSAGE_ID=m"}, true},
		{[]string{"VIRTBRIDGE_UUID=u2"}, false},
		{[]string{"VIRTBRIDGE_UUID"}, false},
	} {
		if got := matchesAll(rec, c.matches); got != c.want {
			t.Errorf("matchesAll(%v) = %v, want %v", c.matches, got, c.want)
		}
	}
}

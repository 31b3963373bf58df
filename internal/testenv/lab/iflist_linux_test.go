package lab

import (
	"fmt"
	"testing"
)

func TestParseIfList(t *testing.T) {
	const out = ` Interface   Type     Source   Model   MAC
------------------------------------------------------------
 vnet0       bridge   br0      e1000   52:54:00:AA:00:01
 -           bridge   br1      e1000   52:54:00:aa:00:02

`
	got := fmt.Sprint(parseIfList(out))
	want := "[{vnet0 bridge br0 e1000 52:54:00:aa:00:01} {- bridge br1 e1000 52:54:00:aa:00:02}]"
	if got != want {
		t.Errorf("parseIfList = %s, want %s", got, want)
	}
	if got := parseIfList("error: failed to get domain 'x'\n"); len(got) != 0 {
		t.Errorf("parseIfList of an error = %v", got)
	}
}

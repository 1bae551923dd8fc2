package fastcgi

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"
)

func TestExplore(t *testing.T) {
	a := startPHP(t, map[string]string{"ok.php": `<?php echo "ok";`})
	nc, _ := net.Dial("unix", a.sock)
	b, _ := appendPairRecords(nil, typeGetValues, 0, []param{{"FCGI_MAX_CONNS", ""}, {"FCGI_MAX_REQS", ""}, {"FCGI_MPXS_CONNS", ""}})
	nc.Write(b[:len(b)-8])
	r, _ := readRecord(bufio.NewReader(nc))
	m := map[string]string{}
	decodePairs(r.content, m)
	t.Logf("type %d: %q", r.typ, m)
	one, _ := bufio.NewReader(nc).ReadByte()
	t.Logf("after: %v", one)

	tr := a.transport()
	do(t, tr, newRequest(t, "GET", "http://h/ok.php", nil))
	tr2 := a.transport()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := tr2.RoundTrip(newRequest(t, "GET", "http://h/ok.php", nil).WithContext(ctx))
	t.Logf("second transport while first keeps a conn: %v", err)
}

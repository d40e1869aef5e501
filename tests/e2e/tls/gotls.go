// An HTTPS server and client in Go's crypto/tls, for tests/e2e/test_tls_go.py (built with the
// Go toolchain of the machine, normally and stripped). HTTP/1.1 only (no ALPN h2), keep-alive.
//
//	gotls server CERT KEY       prints its port; on "report" prints what it served (JSON), on
//	                            "connections" the number of connections it accepted
//	gotls client PORT WORKERS REQUESTS SECONDS
//	                            on "go", WORKERS goroutines (one keep-alive connection each) send
//	                            REQUESTS rounds each, or rounds for SECONDS when SECONDS > 0; then
//	                            prints what it got (JSON)
//
// Each request allocates garbage and grows its goroutine's stack (a deep recursion), so that
// under GOGC=10 the collector runs all the time and stacks move while the uprobes fire.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var sink []byte

// Needs about depth KiB of stack: a goroutine's 8 KiB stack is copied to a larger one.
func deep(depth int) byte {
	var frame [1024]byte
	frame[depth%1024] = byte(depth)
	if depth == 0 {
		return frame[0]
	}
	return deep(depth-1) + frame[depth%1024]
}

// GOTLS_NO_CHURN=1: none of it (tools/bench/cost.py --go measures loupe, not the churn).
var noChurn = os.Getenv("GOTLS_NO_CHURN") == "1"

func churn(i int) {
	if noChurn {
		return
	}
	sink = make([]byte, 16<<10+i%4096)
	deep(16 + i%32)
}

type counter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *counter) add(key string) {
	c.mu.Lock()
	c.counts[key]++
	c.mu.Unlock()
}

func (c *counter) dump() {
	c.mu.Lock()
	defer c.mu.Unlock()
	out, _ := json.Marshal(c.counts)
	fmt.Println(string(out))
}

func server(cert, key string) {
	served := &counter{counts: map[string]int{}}
	var requests, accepted int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		churn(int(atomic.AddInt64(&requests, 1)))
		status, body := 404, 10
		switch {
		case r.Method == "POST" && r.URL.Path == "/upload":
			io.Copy(io.Discard, r.Body)
			status, body = 201, 0
		case r.URL.Path == "/ok" || strings.HasPrefix(r.URL.Path, "/items/"):
			status, body = 200, 100+len(r.URL.Path)
		}
		// Counted before the client can see the answer.
		served.add(fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, status))
		w.Header().Set("Content-Length", strconv.Itoa(body))
		w.WriteHeader(status)
		w.Write(bytes.Repeat([]byte("x"), body))
	})
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{
		Handler:      handler,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1
		ConnState: func(_ net.Conn, state http.ConnState) {
			if state == http.StateNew {
				atomic.AddInt64(&accepted, 1)
			}
		},
	}
	go func() {
		if err := srv.ServeTLS(listener, cert, key); err != http.ErrServerClosed {
			panic(err)
		}
	}()
	fmt.Println(listener.Addr().(*net.TCPAddr).Port)
	stdin := bufio.NewScanner(os.Stdin)
	for stdin.Scan() {
		switch stdin.Text() {
		case "report":
			served.dump()
		case "connections":
			fmt.Println(atomic.LoadInt64(&accepted))
		}
	}
}

func client(port string, workers, rounds int, seconds float64) {
	bufio.NewReader(os.Stdin).ReadString('\n')
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1
		MaxIdleConnsPerHost: workers,
		MaxConnsPerHost:     workers,
	}
	httpClient := &http.Client{Transport: transport}
	got := &counter{counts: map[string]int{}}
	base := "https://127.0.0.1:" + port
	exchange := func(method, path string, body io.Reader) {
		request, _ := http.NewRequest(method, base+path, body)
		response, err := httpClient.Do(request)
		if err != nil {
			fmt.Fprintln(os.Stderr, "request failed:", err)
			os.Exit(1)
		}
		io.Copy(io.Discard, response.Body)
		response.Body.Close()
		got.add(fmt.Sprintf("%s %s %d", method, strings.Split(path, "?")[0], response.StatusCode))
	}
	end := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; seconds > 0 && time.Now().Before(end) || seconds <= 0 && i < rounds; i++ {
				churn(i)
				exchange("GET", "/ok?token=secret", nil)
				exchange("GET", fmt.Sprintf("/items/%d", i), nil)
				if i%10 == 0 {
					exchange("GET", "/missing", nil)
					exchange("POST", "/upload", bytes.NewReader(bytes.Repeat([]byte("y"), 5000)))
				}
			}
		}(w)
	}
	wg.Wait()
	got.dump()
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == "server" {
		server(os.Args[2], os.Args[3])
		return
	}
	if len(os.Args) == 6 && os.Args[1] == "client" {
		workers, _ := strconv.Atoi(os.Args[3])
		rounds, _ := strconv.Atoi(os.Args[4])
		seconds, _ := strconv.ParseFloat(os.Args[5], 64)
		client(os.Args[2], workers, rounds, seconds)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: gotls server CERT KEY | gotls client PORT WORKERS REQUESTS SECONDS")
	os.Exit(2)
}

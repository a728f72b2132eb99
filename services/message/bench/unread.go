package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/imcluster/imcluster/services/message/api"
	"github.com/imcluster/imcluster/services/message/server"
)

// unread: a user with 1,000 unread messages from 10 peers; time full pulls
// (10 pages of 100) and single pages.
func unread() {
	cfg := baseConfig("unread")
	defer setup(cfg)()
	e := startTier(cfg, server.RoleAll)
	defer e.stop()
	var wg sync.WaitGroup
	for p := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := e.token(fmt.Sprint("peer", p))
			for i := range 100 {
				if _, err := e.send(tok, "reader", fmt.Sprint("u", i)); err != nil {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()
	for e.route.n.Load() < 1000 {
		time.Sleep(20 * time.Millisecond)
	}
	tok := e.token("reader")
	var full, page []time.Duration
	for range *flagPulls {
		start := time.Now()
		cursor, got := "", 0
		for {
			t := time.Now()
			req, _ := http.NewRequest("GET", e.url+"/v1/unread?limit=100&cursor="+cursor, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := e.hc.Do(req)
			if err != nil {
				fail(err)
			}
			var u api.UnreadResponse
			if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
				fail(err)
			}
			resp.Body.Close()
			page = append(page, time.Since(t))
			got += len(u.Events)
			if !u.HasMore {
				break
			}
			cursor = u.NextCursor
		}
		if got != 1000 {
			fail(fmt.Errorf("unread pull got %d", got))
		}
		full = append(full, time.Since(start))
	}
	fmt.Printf("unread_pull_1000: %d pulls of 1,000 messages (10 pages of 100): p50 %s p99 %s; per page p50 %s p99 %s\n",
		len(full), ms(pct(full, 0.5)), ms(pct(full, 0.99)), ms(pct(page, 0.5)), ms(pct(page, 0.99)))
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/imcluster/imcluster/pkg/client"
	"github.com/imcluster/imcluster/services/message/model"
	"github.com/imcluster/imcluster/services/protocol"
)

func printJSON(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

// convOf is the conversation of a command: a group's with --group, else
// the 1:1 conversation of as and with.
func convOf(as, with, group string) string {
	if group != "" {
		return model.GroupConvID(group)
	}
	return model.ConvID(as, with)
}

func apiAs(user, device string) (*client.API, error) {
	tok, err := userToken(user)
	if err != nil {
		return nil, err
	}
	return &client.API{BaseURL: g.api, Token: tok, Device: device, HTTP: apiHTTP()}, nil
}

func init() {
	var as, to, group, text, cmid, typ, device, url_ string
	var mentions []string
	var viaPush bool
	send := &cobra.Command{
		Use:   "send",
		Short: "send a message as a user (HTTP API, or over a push socket with --via-push)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmid == "" {
				cmid = uuid.NewString()
			}
			if to == "" && group == "" {
				return errNoTarget
			}
			req := client.SendRequest{To: to, GroupID: group, ClientMsgID: cmid, Type: protocol.MessageType(typ),
				Body: &protocol.Body{Text: text, URL: url_, Mentions: mentions}}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if viaPush {
				tok, err := userToken(as)
				if err != nil {
					return err
				}
				c := client.New(client.Config{URLs: pushURLs(), Token: tok, DeviceID: device, Terminal: "cli", NoSync: true, TLS: g.tls})
				c.Start()
				defer c.Close()
				if err := c.WaitConnected(ctx); err != nil {
					return err
				}
				res, err := c.Send(ctx, req)
				if err != nil {
					return err
				}
				fmt.Println(string(res.Result))
				return nil
			}
			a, err := apiAs(as, device)
			if err != nil {
				return err
			}
			res, err := a.Send(ctx, req)
			if err != nil {
				return err
			}
			printJSON(res)
			return nil
		},
	}
	f := send.Flags()
	f.StringVar(&as, "as", "", "sender user id")
	f.StringVar(&to, "to", "", "recipient user id")
	f.StringVar(&group, "group", "", "group id (instead of --to)")
	f.StringSliceVar(&mentions, "mention", nil, "mention a group member (repeatable; all: everyone, owner and admins only)")
	f.StringVar(&text, "text", "", "text body")
	f.StringVar(&url_, "url", "", "media URL (image, file, voice, video)")
	f.StringVar(&typ, "type", "text", "text, image, file, voice, video")
	f.StringVar(&cmid, "client-msg-id", "", "idempotency key (default: a new UUID)")
	f.StringVar(&device, "device", "imctl", "sending device id")
	f.BoolVar(&viaPush, "via-push", false, "send over a push node socket instead of HTTP")
	rootCmd.AddCommand(send)
}

func init() {
	var as, device, terminal, cursor string
	var noSync bool
	listen := &cobra.Command{
		Use:   "listen",
		Short: "connect as a user/device and print every event as a JSON line (Ctrl-C to stop)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := userToken(as)
			if err != nil {
				return err
			}
			var src client.TokenFunc
			if g.token == "" { // minted here: mint again before it expires
				src = func(context.Context) (string, error) { return userToken(as) }
			}
			c := client.New(client.Config{
				URLs: pushURLs(), APIURL: g.api, Token: tok, TokenSource: src, DeviceID: device, Terminal: terminal, Cursor: cursor, NoSync: noSync, TLS: g.tls,
				OnEvent: func(ev protocol.Event) { printJSON(ev) },
				OnConnect: func(w protocol.ServerFrame) {
					fmt.Fprintf(os.Stderr, "connected to %s as %s/%s (epoch %d)\n", w.NodeID, w.UserID, device, w.Epoch)
				},
				OnDisconnect: func(err error) { fmt.Fprintf(os.Stderr, "disconnected: %v\n", err) },
			})
			c.Start()
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			select {
			case <-sig:
				c.Close()
			case <-c.Done():
			}
			fmt.Fprintf(os.Stderr, "cursor: %s\n", c.Cursor())
			return c.Err()
		},
	}
	f := listen.Flags()
	f.StringVar(&as, "as", "", "user id")
	f.StringVar(&device, "device", "imctl-listen", "device id")
	f.StringVar(&terminal, "terminal", "desktop", "terminal type (a second login on it kicks this one)")
	f.StringVar(&cursor, "cursor", "", "sync cursor to start from (default: the beginning)")
	f.BoolVar(&noSync, "no-sync", false, "push only, no sync after login")
	rootCmd.AddCommand(listen)
}

func init() {
	var as, with, group, before string
	var limit int
	var rawJSON bool
	history := &cobra.Command{
		Use:   "history",
		Short: "print a conversation's history, newest first (raw API JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := apiAs(as, "")
			if err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if before != "" {
				q.Set("before", before)
			}
			var raw json.RawMessage
			if err := a.Get(context.Background(), "/v1/conversations/"+url.PathEscape(convOf(as, with, group))+"/messages?"+q.Encode(), &raw); err != nil {
				return err
			}
			if rawJSON {
				fmt.Println(string(raw))
				return nil
			}
			var page struct {
				Messages   []protocol.Event `json:"messages"`
				NextBefore *int64           `json:"next_before"`
				HasMore    bool             `json:"has_more"`
			}
			if err := json.Unmarshal(raw, &page); err != nil {
				return err
			}
			for _, ev := range page.Messages {
				m := ev.Message
				if ev.Kind == protocol.KindGroup && ev.Group != nil {
					fmt.Printf("seq %-8d %s  %s: group %s %s\n", ev.Seq, time.UnixMilli(ev.AtMs).Format("15:04:05"), ev.From, ev.Group.Op, strings.Join(ev.Group.Users, ","))
					continue
				}
				if m == nil {
					continue
				}
				text := ""
				switch {
				case m.Recalled:
					text = "(recalled)"
				case m.Body != nil && m.Body.Text != "":
					text = m.Body.Text
				case m.Body != nil:
					text = string(m.Type) + " " + m.Body.URL
				}
				to := m.To
				if to == "" {
					to = ev.ConvID
				}
				if m.Body != nil && len(m.Body.Mentions) > 0 {
					text += "  @" + strings.Join(m.Body.Mentions, " @")
				}
				fmt.Printf("seq %-8d %s  %s -> %s  %s\n", ev.Seq, time.UnixMilli(m.SentAtMs).Format("15:04:05"), m.From, to, text)
			}
			if page.HasMore && page.NextBefore != nil {
				fmt.Printf("(more: --before %d)\n", *page.NextBefore)
			}
			return nil
		},
	}
	f := history.Flags()
	f.BoolVar(&rawJSON, "json", false, "print the API's JSON answer")
	f.StringVar(&as, "as", "", "user id")
	f.StringVar(&with, "with", "", "the other participant")
	f.StringVar(&group, "group", "", "a group id (instead of --with)")
	f.StringVar(&before, "before", "", "seq from a previous page's \"more\" line")
	f.IntVar(&limit, "limit", 50, "page size")
	rootCmd.AddCommand(history)

	var uas, cursor string
	unread := &cobra.Command{
		Use:   "unread",
		Short: "pull unread messages across conversations (raw API JSON, one page)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := apiAs(uas, "")
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := a.Get(context.Background(), "/v1/unread?cursor="+url.QueryEscape(cursor), &raw); err != nil {
				return err
			}
			fmt.Println(string(raw))
			return nil
		},
	}
	unread.Flags().StringVar(&uas, "as", "", "user id")
	unread.Flags().StringVar(&cursor, "cursor", "", "cursor from a previous page")
	rootCmd.AddCommand(unread)

	for _, verb := range []string{"read", "recall"} {
		var as, with, group, device string
		var seq int64
		cmd := &cobra.Command{
			Use:   verb,
			Short: map[string]string{"read": "mark a conversation read up to --seq", "recall": "recall your message at --seq"}[verb],
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				a, err := apiAs(as, device)
				if err != nil {
					return err
				}
				conv := convOf(as, with, group)
				if verb == "read" {
					err = a.Read(context.Background(), conv, seq)
				} else {
					err = a.Recall(context.Background(), conv, seq)
				}
				if err != nil {
					return err
				}
				fmt.Printf("%s %s seq %d: ok\n", verb, conv, seq)
				return nil
			},
		}
		cmd.Flags().StringVar(&as, "as", "", "user id")
		cmd.Flags().StringVar(&with, "with", "", "the other participant")
		cmd.Flags().StringVar(&group, "group", "", "a group id (instead of --with)")
		cmd.Flags().StringVar(&device, "device", "imctl", "device id")
		cmd.Flags().Int64Var(&seq, "seq", 0, "seq")
		rootCmd.AddCommand(cmd)
	}
}

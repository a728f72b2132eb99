package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/imcluster/imcluster/pkg/sdk"
	"github.com/imcluster/imcluster/services/protocol"
)

// imctl group …: manage groups as a user (a user token acting as itself,
// through pkg/sdk). Every command prints the API's JSON answer.

func groupClient(as string) (*sdk.Client, error) {
	tok, err := userToken(as)
	if err != nil {
		return nil, err
	}
	return &sdk.Client{BaseURL: g.api, Token: tok, HTTP: apiHTTP()}, nil
}

func splitUsers(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// groupCmd builds one group subcommand: run gets the caller's client.
func groupCmd(use, short string, nargs int, flags func(*cobra.Command), run func(ctx context.Context, c *sdk.Client, as string, args []string) (any, error)) *cobra.Command {
	var as string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(nargs),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := groupClient(as)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := run(ctx, c, as, args)
			if err != nil {
				return err
			}
			printJSON(out)
			return nil
		},
	}
	cmd.Flags().StringVar(&as, "as", "", "acting user id")
	if flags != nil {
		flags(cmd)
	}
	return cmd
}

func init() {
	group := &cobra.Command{Use: "group", Short: "manage groups: create, get, update, members, add, remove, leave, role, list, dissolve"}
	var name, members, id, avatar, after string
	var limit int
	group.AddCommand(
		groupCmd("create", "create a group owned by --as", 0, func(c *cobra.Command) {
			c.Flags().StringVar(&id, "id", "", "group id (default: generated)")
			c.Flags().StringVar(&name, "name", "", "group name")
			c.Flags().StringVar(&members, "members", "", "initial members, comma-separated")
		}, func(ctx context.Context, c *sdk.Client, as string, _ []string) (any, error) {
			return c.CreateGroup(ctx, as, sdk.NewGroup{GroupID: id, Name: name, Members: splitUsers(members)})
		}),
		groupCmd("get GROUP", "show a group", 1, nil, func(ctx context.Context, c *sdk.Client, as string, a []string) (any, error) {
			return c.GetGroup(ctx, as, a[0])
		}),
		groupCmd("update GROUP", "rename a group or change its avatar (owner, admins)", 1, func(c *cobra.Command) {
			c.Flags().StringVar(&name, "name", "", "new name")
			c.Flags().StringVar(&avatar, "avatar", "", "new avatar URL")
		}, func(ctx context.Context, c *sdk.Client, as string, a []string) (any, error) {
			var u sdk.GroupUpdate
			if name != "" {
				u.Name = &name
			}
			if avatar != "" {
				u.Avatar = &avatar
			}
			return c.UpdateGroup(ctx, as, a[0], u)
		}),
		groupCmd("members GROUP", "list a group's members", 1, func(c *cobra.Command) {
			c.Flags().StringVar(&after, "after", "", "page after this user id")
			c.Flags().IntVar(&limit, "limit", 50, "page size")
		}, func(ctx context.Context, c *sdk.Client, as string, a []string) (any, error) {
			ms, next, err := c.ListMembers(ctx, as, a[0], after, limit)
			return map[string]any{"members": ms, "after": next}, err
		}),
		groupCmd("add GROUP USER[,USER…]", "add members (owner, admins)", 2, nil, func(ctx context.Context, c *sdk.Client, as string, a []string) (any, error) {
			return c.AddMembers(ctx, as, a[0], splitUsers(a[1]))
		}),
		groupCmd("remove GROUP USER", "remove a member (owner, admins)", 2, nil, func(ctx context.Context, c *sdk.Client, as string, a []string) (any, error) {
			return c.RemoveMember(ctx, as, a[0], a[1])
		}),
		groupCmd("leave GROUP", "leave a group", 1, nil, func(ctx context.Context, c *sdk.Client, as string, a []string) (any, error) {
			return c.LeaveGroup(ctx, as, a[0])
		}),
		groupCmd("role GROUP USER ROLE", "set a member's role: admin, member, or owner to transfer ownership (owner only)", 3, nil,
			func(ctx context.Context, c *sdk.Client, as string, a []string) (any, error) {
				return c.SetMemberRole(ctx, as, a[0], a[1], protocol.Role(a[2]))
			}),
		groupCmd("list", "list the groups of --as", 0, func(c *cobra.Command) {
			c.Flags().StringVar(&after, "after", "", "page after this group id")
			c.Flags().IntVar(&limit, "limit", 50, "page size")
		}, func(ctx context.Context, c *sdk.Client, as string, _ []string) (any, error) {
			gs, next, err := c.ListGroups(ctx, as, after, limit)
			return map[string]any{"groups": gs, "after": next}, err
		}),
		groupCmd("dissolve GROUP", "dissolve a group (owner only)", 1, nil, func(ctx context.Context, c *sdk.Client, as string, a []string) (any, error) {
			return c.DissolveGroup(ctx, as, a[0])
		}),
	)
	rootCmd.AddCommand(group)
}

// errNoTarget is the send command's error without --to or --group.
var errNoTarget = fmt.Errorf("--to USER or --group GROUP is required")

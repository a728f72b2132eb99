package protocol

// GroupOp names a change to a group.
type GroupOp string

const (
	GroupCreated   GroupOp = "created"   // Users: the initial members (owner first)
	GroupJoined    GroupOp = "joined"    // Users were added (by From)
	GroupLeft      GroupOp = "left"      // From left
	GroupRemoved   GroupOp = "removed"   // Users were removed (by From)
	GroupRole      GroupOp = "role"      // Users got Role; Role owner transfers ownership
	GroupUpdated   GroupOp = "updated"   // Name/Avatar/Attrs changed (set fields only)
	GroupDissolved GroupOp = "dissolved" // the group ended; nothing more can be sent
)

// Role is a member's role in a group.
type Role string

const (
	RoleOwner  Role = "owner"
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleOwner || r == RoleAdmin || r == RoleMember }

// CanManage reports whether r may add and remove members and change the
// group's attributes.
func (r Role) CanManage() bool { return r == RoleOwner || r == RoleAdmin }

// GroupChange is the content of a KindGroup event.
type GroupChange struct {
	Op     GroupOp           `json:"op"`
	Users  []string          `json:"users,omitempty"`
	Role   Role              `json:"role,omitempty"`
	Name   *string           `json:"name,omitempty"`
	Avatar *string           `json:"avatar,omitempty"`
	Attrs  map[string]string `json:"attrs,omitempty"`
}

// Group is a group's description (GET /v1/groups/{group}).
type Group struct {
	GroupID   string            `json:"group_id"`
	ConvID    string            `json:"conv_id"`
	Name      string            `json:"name"`
	Avatar    string            `json:"avatar,omitempty"`
	Attrs     map[string]string `json:"attrs,omitempty"`
	Owner     string            `json:"owner"`
	Members   int               `json:"members"`
	CreatedMs int64             `json:"created_ms"`
	Dissolved bool              `json:"dissolved,omitempty"`
	// Seq is the seq of the change an answer is about (absent in reads).
	Seq *int64 `json:"seq,omitempty"`
}

// Member is one member of a group.
type Member struct {
	UserID    string `json:"user_id"`
	Role      Role   `json:"role"`
	JoinedSeq int64  `json:"joined_seq"` // the seq of the joined/created event
}

// Command chaos is the black-box fault suite of issue 11 (`make chaos`,
// hack/chaos.sh): it drives the project only through its public API and
// protocol — the HTTP send API, the WebSocket push protocol through
// pkg/client, sync and the unread pull — while it kills and stops the
// processes of a stack of its own.
//
// The stack: Kafka, Cassandra and etcd of hack/deps.sh under
// .run/chaos/deps on ports of their own (hack/chaos.sh starts them fresh
// and stops them on exit), two message and two push processes started here
// (killed with this process: Pdeathsig), and a TCP balancer in this
// process standing for the message tier's Service (round-robin over the
// ready message processes). Faults only hit those: a dependency is
// signalled only when its recorded pid's command line names the suite's
// run directory. The shared servers on 9092/9042/2379 are never touched.
//
// Each scenario: 500 fresh users with two devices each (10 % of them
// offline until the check) and 10 groups of 20 members (-groups,
// -group-size), created at setup through the public API (POST /v1/groups
// by an online owner with the other members; the members are drawn from
// all users, so about 10 % of them, at least one per group, are offline
// until the check; setup waits until every connected member device holds
// the group's created event). 200 messages/s (-rate) from a random
// online user's device: 80 % to a random user, 20 % (-group-share) to a
// random group by one of its online members (group_id instead of to);
// each sent until acknowledged with numbered attempts (and 3 % sent once
// more after their ack, as after a lost answer); 10 s into the load one
// fault; once the faulty part is back and every tier ready, 10 s more
// load. Then the offline users log in, every device gets 30 s to catch up
// on its own, syncs once more, and every user is read through the API (a
// full sync from the empty cursor and the unread pull), every group
// through its history (GET /v1/conversations/g:<id>/messages, every
// page, as its owner). The pipeline writes the feed and conversation rows
// after it routes a message, so an API view may lag the pushes: a view
// that lacks an acknowledged message is read again every 2 s, and the
// message is lost only if it is still missing 60 s after the first read
// (how many arrived late, and how late, is noted). A message's
// participants are both users of a 1:1
// message, every member of a group's (members never change during the
// run). A scenario fails on
//
//   - lost: an acknowledged message missing from the full sync of any
//     participant (the sender included), from the unread pull of any
//     participant but the sender (unless that participant sent a later
//     message into the conversation: sending marks it read, in groups as
//     in 1:1), from the group's history, or from any device of any
//     participant (the sending device gets it by sync: it is never pushed
//     its own message, the sender's other devices are);
//   - stored twice: one client_msg_id at two seqs in one view;
//   - reordered: one message at different seqs in different views (or at
//     another seq than its first attempt's answer), a message sent after
//     another one of its conversation was acknowledged at a lower seq, a
//     sync page out of seq order within a conversation, a group's history
//     out of seq order, a push below a seq already pushed to the device in
//     its conversation;
//   - a retry answered with another msg_id or 409, a rejected event (for
//     groups too: nobody leaves, so no send may be refused by the
//     pipeline);
//   - a message pushed back to the device that sent it, a delivered
//     receipt in a group conversation (groups have none);
//   - no group message acknowledged (when groups are on);
//   - a tier not ready 10 s after its dependency was back, or not ready
//     again later (until the checks are done; two failed /readyz rounds in
//     a row, 250 ms apart, as a probe with a failure threshold of 2);
//   - any send attempt refused during a Cassandra outage (the send path
//     touches only Kafka).
//
// Lost, stored twice and reordered are counted separately for 1:1 and
// group messages (a group message counts once however many members
// lack it), in the log's per-scenario "1:1:" and "groups:" lines and in
// the results table. It reports, besides: unacknowledged messages (and how many of those were
// stored all the same), refused attempts, redelivered pushes (events pushed
// to a device that already held them: arrivals by push minus new events
// by push), (device, message) pairs still missing before the final sync
// (self-healing delivery, reported, not failing; logged by kind with
// examples), and recovery times.
//
// The checks can fail: -sabotage N makes every device drop every Nth
// pushed message (1:1 or group) from its store (the client believes it
// held it), and every scenario then FAILs with those messages lost and
// unhealed (`hack/chaos.sh -scenarios etcd-kill -users 40 -rate 20
// -sabotage 50`: 19 of 342 1:1 and 47 of 68 group messages lost — a group
// message is pushed to some 35 devices, so far more of them are hit). An
// early run also caught the suite's own unread check expecting messages
// its recipients had read by replying; groups_test.go holds that rule and
// the rest of the expected-views computation as table tests.
// -groups 0 (or -group-share 0) drives 1:1 traffic only.
package main

package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// The errors of CheckServer, each wrapped in a *ServerError that names the
// server, what was found and the fix. Compare with errors.Is.
var (
	// ErrEvictionPolicy means the server's maxmemory-policy is not
	// noeviction: under memory pressure Redis would delete keys, and an
	// evicted envelope, dedup record or checkpoint cannot be told from one
	// that never existed (an event applied twice, a version published
	// twice). A refusal: the service must not start.
	ErrEvictionPolicy = errors.New("store: redis may evict keys")
	// ErrReadOnlyReplica means the server is a read-only replica: every
	// write would fail. A refusal: the service must not start.
	ErrReadOnlyReplica = errors.New("store: redis is a read-only replica")
	// ErrUnverified means the server answered neither CONFIG GET nor INFO
	// for a setting (managed Redis often disables or renames CONFIG and
	// trims INFO; miniredis answers neither). Not a refusal: callers log it
	// as a warning and go on.
	ErrUnverified = errors.New("store: redis settings not verified")
)

// ServerError is what CheckServer found wrong with one server, or could not
// verify there.
type ServerError struct {
	// Addr is the server's address.
	Addr string
	// Err is ErrEvictionPolicy, ErrReadOnlyReplica or ErrUnverified.
	Err error
	// Detail names the setting, its value and the fix.
	Detail string
}

func (e *ServerError) Error() string { return "redis " + e.Addr + ": " + e.Detail }

// Unwrap returns e.Err.
func (e *ServerError) Unwrap() error { return e.Err }

// CheckServer checks, before a service uses c, that Redis can hold
// esignflow's state: its maxmemory-policy is noeviction, because a key
// evicted under memory pressure cannot be detected (it looks like one that
// was never written), and it is not a read-only replica, where every write
// fails. Run it at start-up: it costs a few round trips per server.
//
// The policy is read with CONFIG GET maxmemory-policy or, where CONFIG is
// disabled or renamed, from INFO memory; the role from INFO replication and
// CONFIG GET replica-read-only (or INFO's slave_read_only). With a
// *redis.ClusterClient the policy of every node is checked (a replica's
// policy applies once it is promoted) and the role is not: the cluster
// client writes to masters only. With a *redis.Ring every shard is checked.
//
// It returns nil when every check passed; otherwise an error wrapping one
// or more *ServerError, in this order of precedence: refusals
// (ErrEvictionPolicy, ErrReadOnlyReplica; every one found, with
// errors.Join), then errors reaching a server (returned as they are), then,
// when nothing was refused and nothing failed, ErrUnverified for the
// settings the server would not tell. A caller refuses to start on any
// error but ErrUnverified, which it logs as a warning.
func CheckServer(ctx context.Context, c redis.UniversalClient) error {
	var (
		mu   sync.Mutex
		errs []error
	)
	each := func(role bool) func(context.Context, *redis.Client) error {
		return func(ctx context.Context, n *redis.Client) error {
			found := checkNode(ctx, n, n.Options().Addr, role)
			mu.Lock()
			errs = append(errs, found...)
			mu.Unlock()
			return nil
		}
	}
	var err error
	switch c := c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachShard(ctx, each(false))
	case *redis.Ring:
		err = c.ForEachShard(ctx, each(true))
	case *redis.Client:
		errs = checkNode(ctx, c, c.Options().Addr, true)
	default:
		errs = checkNode(ctx, c, fmt.Sprintf("(%T)", c), true)
	}
	if err != nil {
		return fmt.Errorf("redis: list nodes: %w", err)
	}
	return worst(errs)
}

// CheckServer runs CheckServer on the store's client.
func (s *Store) CheckServer(ctx context.Context) error { return CheckServer(ctx, s.cfg.Client) }

// CheckAtStart is what a service runs before it uses the store: a refusal
// or a failure to reach Redis is returned; settings the server would not
// show (ErrUnverified) are logged as a warning and the service starts.
func (s *Store) CheckAtStart(ctx context.Context, log *slog.Logger) error {
	err := s.CheckServer(ctx)
	if errors.Is(err, ErrUnverified) {
		log.Warn("redis settings not verified, starting anyway", "err", err)
		return nil
	}
	return err
}

// worst keeps the errors of the highest precedence (see CheckServer), in a
// stable order.
func worst(errs []error) error {
	var refused, failed, unverified []error
	for _, err := range errs {
		switch {
		case errors.Is(err, ErrEvictionPolicy), errors.Is(err, ErrReadOnlyReplica):
			refused = append(refused, err)
		case errors.Is(err, ErrUnverified):
			unverified = append(unverified, err)
		default:
			failed = append(failed, err)
		}
	}
	for _, errs := range [][]error{refused, failed, unverified} {
		if len(errs) > 0 {
			slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
			if len(errs) == 1 {
				return errs[0]
			}
			return errors.Join(errs...)
		}
	}
	return nil
}

// checkNode checks one server; role says whether to check its role.
func checkNode(ctx context.Context, c redis.Cmdable, addr string, role bool) []error {
	var found []error
	var unknown []string
	policy, viaConfig, err := readPolicy(ctx, c)
	switch {
	case err != nil:
		return []error{fmt.Errorf("redis %s: read maxmemory-policy: %w", addr, err)}
	case policy == "":
		unknown = append(unknown, "could not read maxmemory-policy (neither CONFIG GET maxmemory-policy nor INFO memory answers it): make sure it is noeviction, or an evicted key will go undetected")
	case policy != "noeviction":
		fix := "set maxmemory-policy noeviction in redis.conf or CONFIG SET maxmemory-policy noeviction"
		if !viaConfig {
			fix = "set maxmemory-policy noeviction in redis.conf or in the managed service's parameters (CONFIG is not available here)"
		}
		found = append(found, &ServerError{Addr: addr, Err: ErrEvictionPolicy,
			Detail: "maxmemory-policy is " + policy + ": esignflow needs noeviction (an evicted key cannot be detected): " + fix})
	}
	if role {
		r, err := readRole(ctx, c)
		switch {
		case err != nil:
			return append(found, fmt.Errorf("redis %s: read role: %w", addr, err))
		case r.role == "":
			unknown = append(unknown, "could not read role (INFO replication does not answer it): make sure this is the primary, not a replica")
		case r.replica && r.readOnly != "no":
			setting := "replica-read-only " + r.readOnly
			if r.readOnly == "" {
				setting = "replica-read-only unreadable (Redis's default is yes)"
			}
			found = append(found, &ServerError{Addr: addr, Err: ErrReadOnlyReplica,
				Detail: "role is replica of " + r.master + " with " + setting +
					": esignflow writes every batch and needs the primary: point the Redis URL at the primary " + r.master +
					" (with Sentinel, at the master by name), or promote this server with REPLICAOF NO ONE"})
		}
	}
	if len(unknown) > 0 {
		found = append(found, &ServerError{Addr: addr, Err: ErrUnverified,
			Detail: strings.Join(unknown, "; ")})
	}
	return found
}

// readPolicy returns the server's maxmemory-policy, "" when the server
// answers neither CONFIG GET nor INFO memory's maxmemory_policy; viaConfig
// says whether CONFIG answered.
func readPolicy(ctx context.Context, c redis.Cmdable) (policy string, viaConfig bool, err error) {
	vals, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err == nil && vals["maxmemory-policy"] != "" {
		return vals["maxmemory-policy"], true, nil
	}
	if err != nil && !isReply(err) {
		return "", false, err
	}
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		if isReply(err) {
			return "", false, nil
		}
		return "", false, err
	}
	return infoField(info, "maxmemory_policy"), false, nil
}

// role is what INFO replication (and CONFIG) say of a server's role.
type role struct {
	role     string // as INFO says it: master, slave (or replica); "": unknown
	replica  bool
	master   string // a replica's primary, host:port
	readOnly string // a replica's replica-read-only: yes, no or "" (unknown)
}

func readRole(ctx context.Context, c redis.Cmdable) (role, error) {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		if isReply(err) {
			return role{}, nil
		}
		return role{}, err
	}
	r := role{role: infoField(info, "role")}
	if r.role != "slave" && r.role != "replica" {
		return r, nil
	}
	r.replica = true
	r.master = net.JoinHostPort(infoField(info, "master_host"), infoField(info, "master_port"))
	for _, name := range []string{"replica-read-only", "slave-read-only"} { // the second before Redis 5
		vals, err := c.ConfigGet(ctx, name).Result()
		if err != nil && !isReply(err) {
			return r, err
		}
		if v := vals[name]; v == "yes" || v == "no" {
			r.readOnly = v
			return r, nil
		}
	}
	for _, name := range []string{"slave_read_only", "replica_read_only"} {
		switch infoField(info, name) {
		case "1":
			r.readOnly = "yes"
			return r, nil
		case "0":
			r.readOnly = "no"
			return r, nil
		}
	}
	return r, nil
}

// isReply reports whether err is the server's error reply (an unknown or
// disabled command, a permission denied), not a failure to reach it.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// infoField returns the value of name in an INFO answer, "" when absent.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r\n"), ":")
		if ok && k == name {
			return v
		}
	}
	return ""
}

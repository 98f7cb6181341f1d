package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	actorcluster "github.com/asynkron/protoactor-go/cluster"
	consul "github.com/hashicorp/consul/api"
)

// Consul configures the Consul provider.
type Consul struct {
	// Address of the Consul agent (host:port); empty: CONSUL_HTTP_ADDR, or
	// the agent on 127.0.0.1:8500.
	Address string
	// TTL is how long a member stays passing without a heartbeat
	// (default 3s; heartbeats go every TTL/3).
	TTL time.Duration
	// OnDropped is called when Consul has dropped this member while it was
	// alive (its peers have blocked its id for good): the node must rejoin
	// under a new member id, which in caregrid means a restart.
	OnDropped func()
}

// Consul provider timing.
const (
	consulDefaultTTL = 3 * time.Second
	// A member missing from Consul's passing list leaves the topology only
	// after this long: a Consul restart (its dev agent forgets every
	// registration) is bridged by the members re-registering meanwhile.
	consulGrace      = 3 * time.Second
	consulBackoffMax = 10 * time.Second
	// A blocking query's longest wait: also how often a missing member's
	// grace is looked at when nothing changes.
	consulWait = time.Second
)

// consulProvider registers the member as a service with a TTL check, keeps
// the check passing, and watches the service's passing instances. Unlike
// proto.actor's own Consul provider it backs off when registration fails,
// retries a failed watch instead of panicking, rejoins after Consul forgot
// it, and deregisters before the actor system stops.
type consulProvider struct {
	cfg     Consul
	service string
	client  *consul.Client
	logger  *slog.Logger

	cluster *actorcluster.Cluster
	self    *actorcluster.Member
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	left    sync.Once

	// Used by update only, under mu (the watch and a closed connection
	// call it).
	mu      sync.Mutex
	known   map[string]*actorcluster.Member // member id -> member
	missing map[string]time.Time            // member id -> since when Consul does not list it
	heard   map[string]time.Time            // member id -> when it joined, or last answered a question
	lost    map[string]bool                 // member ids whose connection was lost and that did not answer
	// admit, when set, is closed once this member may register (see
	// Config.Admit).
	admit <-chan struct{}
	// gone are the ids taken out of the topology (replaced, lost, left):
	// the topology blocks them for good, so they are not taken back
	// whatever Consul lists.
	gone map[string]bool
	last []*consul.ServiceEntry // the watch's last answer
	// suspects are members whose connection closed (a killed process) or
	// to which a request stalled: asked at once, and out unless they
	// answer. The heartbeat loop finds the silent ones (suspect.go).
	suspects *suspects
	// membership answers the others' heartbeats; it tells a member this
	// one dropped that it was dropped.
	membership  *membership
	toldDropped sync.Once
	wake        chan struct{} // a heartbeat now, not at the next tick
}

func newConsulProvider(cfg Consul, clusterName string, logger *slog.Logger) (*consulProvider, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = consulDefaultTTL
	}
	cc := consul.DefaultConfig()
	if cfg.Address != "" {
		cc.Address = cfg.Address
	}
	client, err := consul.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("cluster: consul: %w", err)
	}
	// The API client has no timeout: an agent that accepts and never
	// answers would hang registration at start. Blocking queries wait
	// consulWait at most, well inside this.
	cc.HttpClient.Timeout = consulWait + 10*time.Second
	ctx, cancel := context.WithCancel(context.Background())
	return &consulProvider{cfg: cfg, service: "caregrid-" + clusterName, client: client, logger: logger,
		ctx: ctx, cancel: cancel, known: map[string]*actorcluster.Member{}, missing: map[string]time.Time{}, heard: map[string]time.Time{}, lost: map[string]bool{}, gone: map[string]bool{}, wake: make(chan struct{}, 1)}, nil
}

func (p *consulProvider) checkID() string { return "service:" + p.self.Id }

func (p *consulProvider) StartMember(c *actorcluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	p.cluster = c
	p.suspects = newSuspects(c.ActorSystem, p.askNow)
	p.self = &actorcluster.Member{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds()}
	p.membership = &membership{self: p.self, admit: p.admit}
	if err := p.membership.spawn(c.ActorSystem); err != nil {
		return err
	}
	c.MemberList.UpdateClusterTopology(actorcluster.Members{p.self})
	p.wg.Add(3)
	go p.beat()
	go func() {
		if p.admit != nil {
			select {
			case <-p.admit:
			case <-p.ctx.Done():
				p.wg.Done()
				return
			}
		}
		if err := p.register(); err != nil {
			p.logger.Warn("consul: registration failed; retrying", "error", err)
		}
		p.heartbeat()
	}()
	go p.watch()
	return nil
}

func (p *consulProvider) StartClient(c *actorcluster.Cluster) error {
	p.cluster = c
	p.suspects = newSuspects(c.ActorSystem, p.askNow)
	p.wg.Add(2)
	go p.beat()
	go p.watch()
	return nil
}

// Shutdown deregisters (graceful or not: the process is going) and stops
// the loops. Node.Stop calls leave before the actor system stops.
func (p *consulProvider) Shutdown(bool) error {
	p.leave()
	return nil
}

func (p *consulProvider) leave() {
	p.left.Do(func() {
		p.suspects.stop()
		p.cancel()
		p.wg.Wait()
		if p.self != nil {
			if err := p.client.Agent().ServiceDeregister(p.self.Id); err != nil {
				p.logger.Warn("consul: deregistration failed (its TTL will expire)", "error", err)
			}
		}
	})
}

func (p *consulProvider) register() error {
	return p.client.Agent().ServiceRegister(&consul.AgentServiceRegistration{
		ID: p.self.Id, Name: p.service, Address: p.self.Host, Port: int(p.self.Port),
		Meta: map[string]string{"kinds": strings.Join(p.self.Kinds, ",")},
		Check: &consul.AgentServiceCheck{CheckID: p.checkID(), TTL: p.cfg.TTL.String(),
			DeregisterCriticalServiceAfter: "1m", Status: consul.HealthPassing},
	})
}

// heartbeat keeps the TTL check passing; when the agent no longer knows
// the check (it restarted, or reaped the member) it registers again.
//
// A check that Consul still knows but that went without a heartbeat for
// longer than TTL plus the peers' grace (this process was paused, or cut
// off from Consul while Consul ran on) was critical long enough for the
// peers to drop this member: that is reported to OnDropped. After a Consul
// restart the check is unknown instead, and nobody was dropped.
func (p *consulProvider) heartbeat() {
	defer p.wg.Done()
	failures := 0
	lastOK := time.Now()
	for {
		// Backing off no further than a heartbeat: after a Consul restart
		// this member must register again within the peers' grace.
		wait := p.cfg.TTL / 3
		if failures > 0 {
			wait = min(providerBackoff(failures), wait)
		}
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(wait):
		}
		err := p.client.Agent().UpdateTTL(p.checkID(), "", consul.HealthPassing)
		if err == nil && time.Since(lastOK) > p.cfg.TTL+consulGrace {
			p.dropped("this member was dropped from the cluster (its check went critical)", time.Since(lastOK))
		}
		if err != nil {
			err = p.register()
		}
		if err != nil {
			if failures++; failures == 1 {
				p.logger.Warn("consul: heartbeat failed; retrying with backoff", "error", err)
			}
			continue
		}
		if failures > 0 {
			p.logger.Warn("consul: registered again", "member", p.self.Id, "after_failures", failures)
		}
		failures, lastOK = 0, time.Now()
	}
}

// dropped tells OnDropped, once: this member's id is out of its peers'
// topology.
func (p *consulProvider) dropped(why string, silent time.Duration) {
	p.toldDropped.Do(func() {
		p.logger.Error("consul: "+why+"; it must rejoin under a new id",
			"member", p.self.Id, "silent_for", silent.Round(time.Millisecond))
		if p.cfg.OnDropped != nil {
			go p.cfg.OnDropped()
		}
	})
}

// watch follows the passing instances with blocking queries, retrying a
// failed query with backoff (the topology stays as it was meanwhile).
func (p *consulProvider) watch() {
	defer p.wg.Done()
	var index uint64
	failures := 0
	for {
		q := (&consul.QueryOptions{WaitIndex: index, WaitTime: consulWait}).WithContext(p.ctx)
		entries, meta, err := p.client.Health().Service(p.service, "", true, q)
		if p.ctx.Err() != nil {
			return
		}
		if err != nil {
			if failures++; failures == 1 {
				p.logger.Warn("consul: watch failed; retrying with backoff", "error", err)
			}
			index = 0
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(providerBackoff(failures)):
			}
			continue
		}
		failures = 0
		if meta.LastIndex < index { // the index went back (Consul restarted): start over
			index = 0
		} else {
			index = meta.LastIndex
		}
		p.update(entries)
	}
}

// update publishes the members Consul lists as passing, plus those it has
// stopped listing for less than consulGrace, plus this member.
func (p *consulProvider) update(entries []*consul.ServiceEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = entries
	now := time.Now()
	listed := map[string]bool{}
	byAddress := map[string]string{} // address -> the id Consul lists there
	for _, e := range entries {
		s := e.Service
		if p.gone[s.ID] {
			continue
		}
		var kinds []string
		if k := s.Meta["kinds"]; k != "" {
			kinds = strings.Split(k, ",")
		}
		if p.known[s.ID] == nil {
			p.logger.Warn("consul: member joined", "member", s.ID, "address", s.Address+":"+strconv.Itoa(s.Port))
			p.heard[s.ID] = now
		}
		m := &actorcluster.Member{Id: s.ID, Host: s.Address, Port: int32(s.Port), Kinds: kinds}
		p.known[s.ID] = m
		listed[s.ID] = true
		if prev, ok := byAddress[m.Address()]; !ok || p.heard[s.ID].After(p.heard[prev]) {
			byAddress[m.Address()] = s.ID // the one that joined last is the live one
		}
		delete(p.missing, s.ID)
	}
	if p.self != nil {
		p.known[p.self.Id] = p.self // alive, whatever Consul says
		byAddress[p.self.Address()] = p.self.Id
	}
	members := actorcluster.Members{}
	for id, m := range p.known {
		if !listed[id] {
			if _, ok := p.missing[id]; !ok {
				p.missing[id] = now
			}
		}
		isSelf := p.self != nil && id == p.self.Id
		if other, ok := byAddress[m.Address()]; !isSelf && ok && other != id {
			// Restarted on the same address under a new id: the old one is
			// gone, now, not after the grace.
			p.logger.Warn("consul: member replaced by a restart on its address", "member", id, "by", other)
			delete(p.known, id)
			p.gone[id] = true
			delete(p.missing, id)
			continue
		}
		if !isSelf && p.lost[id] {
			p.logger.Warn("consul: member lost: suspected or silent, and it does not answer", "member", id, "address", m.Address())
			delete(p.known, id)
			p.gone[id] = true
			p.membership.drop(id)
			delete(p.missing, id)
			delete(p.lost, id)
			continue
		}
		if !isSelf && !listed[id] && now.Sub(p.missing[id]) > consulGrace {
			p.logger.Warn("consul: member left", "member", id, "address", m.Host+":"+strconv.Itoa(int(m.Port)))
			delete(p.known, id)
			p.gone[id] = true
			delete(p.missing, id)
			continue
		}
		members = append(members, m)
	}
	if p.self != nil && !listed[p.self.Id] && len(entries) > 0 && now.Sub(p.missing[p.self.Id]) > consulGrace {
		// Consul lists others but not this member, for longer than the
		// grace its peers give: they have dropped and blocked its id.
		p.dropped("Consul lists the others but not this member", now.Sub(p.missing[p.self.Id]))
	}
	p.cluster.MemberList.UpdateClusterTopology(members)
}

// askNow wakes the heartbeat loop: a member became suspect.
func (p *consulProvider) askNow() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// beat is the failure detector (suspect.go): every heartbeat it asks each
// member of the topology who it is, marks lost those the detector gives
// up on, and publishes the topology again when it did. Consul's TTL and
// grace still drop a member whose process is gone from Consul's view, but
// later.
func (p *consulProvider) beat() {
	defer p.wg.Done()
	var gap loopGap
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		case <-p.wake:
		}
		now := time.Now()
		if silent, paused := gap.paused(now); paused {
			// The others have dropped this member: it rejoins at once
			// rather than serve on under its old id until one says so.
			// Their silence meanwhile was this process's own.
			p.mu.Lock()
			for id := range p.heard {
				p.heard[id] = now
			}
			p.mu.Unlock()
			if p.self != nil {
				p.dropped("this member did not run for longer than its peers wait", silent)
			}
		}
		p.heartbeatOnce(now)
	}
}

func (p *consulProvider) heartbeatOnce(now time.Time) {
	p.mu.Lock()
	byAddress := map[string]string{}
	var ask []string
	for id, m := range p.known {
		if p.self == nil || id != p.self.Id {
			byAddress[m.Address()] = id
			ask = append(ask, m.Address())
		}
	}
	p.mu.Unlock()
	who := p.self
	if who == nil {
		who = &actorcluster.Member{}
	}
	answers := askMembers(p.cluster.ActorSystem, who, ask, heartbeat)
	p.mu.Lock()
	changed := false
	// An answer proves the member ran when the question went (sent); its
	// silence is judged as of when the answers were awaited.
	sent := now
	now = time.Now()
	for _, addr := range ask {
		id := byAddress[addr]
		a := answers[addr]
		switch {
		case a.dropped != nil && p.self != nil && a.dropped.GetId() == p.self.Id:
			p.dropped("a peer has dropped this member", 0) // does not block: OnDropped runs apart
		case a.member != nil && a.member.Id == id:
			p.heard[id] = sent
			p.suspects.clear(addr)
			continue
		}
		if p.known[id] == nil || p.lost[id] {
			continue
		}
		switch p.suspects.judge(addr, p.heard[id], now) {
		case drop, dropUnlessAnswers:
			p.lost[id] = true
			changed = true
		}
	}
	last := p.last
	p.mu.Unlock()
	if changed {
		p.update(last)
	}
}

// providerBackoff is the wait of a provider (Consul, static peers) after n
// failures in a row: 250 ms doubling up to consulBackoffMax, with jitter so
// members do not retry in step. (Grain calls retry on Backoff, in call.go.)
func providerBackoff(n int) time.Duration {
	d := min(250*time.Millisecond<<min(n, 10), consulBackoffMax)
	return d/2 + rand.N(d/2)
}

// Command consul-dev is HashiCorp Consul's own command line (agent, kv,
// members, ...), built from its Go module so that tests can run a real
// Consul (`agent -dev` on loopback ports) without a package manager:
// `make consul` writes bin/consul. Its own module keeps Consul's large
// dependency tree out of caregrid's. Development and tests only.
package main

import (
	"os"

	"github.com/hashicorp/consul/command"
	"github.com/hashicorp/consul/command/cli"
	mcli "github.com/mitchellh/cli"
)

func main() {
	ui := &cli.BasicUI{BasicUi: mcli.BasicUi{Reader: os.Stdin, Writer: os.Stdout, ErrorWriter: os.Stderr}}
	c := &mcli.CLI{Args: os.Args[1:], Commands: command.RegisteredCommands(ui), Name: "consul", HelpWriter: os.Stdout, ErrorWriter: os.Stderr}
	code, err := c.Run()
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
	}
	os.Exit(code)
}

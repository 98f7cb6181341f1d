package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/cluster/devcerts"
)

// devCertsCmd writes a throwaway CA and member certificates for the
// remoting's mutual TLS (development and tests only).
func devCertsCmd(args []string) error {
	fs := flag.NewFlagSet("dev-certs", flag.ContinueOnError)
	dir := fs.String("dir", ".data/certs", "directory to write ca.crt, ca.key and member-N.crt/.key into")
	members := fs.Int("members", 3, "member certificates to make")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "addresses and names each certificate also carries (besides "+cluster.PeerName+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dev-certs: unexpected arguments %v", fs.Args())
	}
	files, err := devcerts.Generate(*dir, *members, cluster.PeerName, strings.Split(*hosts, ","))
	if err != nil {
		return err
	}
	fmt.Printf("CA: %s (key %s)\n", files.CA, files.CAKey)
	for i, m := range files.Members {
		fmt.Printf("member %d: --cluster-tls-ca %s --cluster-tls-cert %s --cluster-tls-key %s\n", i+1, files.CA, m.Cert, m.Key)
	}
	fmt.Println("development only: the keys are unencrypted and the CA signs anything you ask it to")
	return nil
}

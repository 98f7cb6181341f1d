package main

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/caregrid/caregrid/cluster"
	"github.com/caregrid/caregrid/cluster/devcerts"
)

// devCertsCmd writes a throwaway CA and member certificates for the
// remoting's mutual TLS (development and tests only); with --edge or
// --service, it issues one more certificate from the CA already in --dir.
func devCertsCmd(args []string) error {
	fs := flag.NewFlagSet("dev-certs", flag.ContinueOnError)
	dir := fs.String("dir", ".data/certs", "directory to write ca.crt, ca.key and member-N.crt/.key into")
	members := fs.Int("members", 3, "member certificates to make")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "addresses and names each certificate also carries (besides its role's name)")
	edge := fs.String("edge", "", "instead: issue an edge node's certificate (for "+cluster.EdgeName+") named NAME from the CA in --dir")
	service := fs.String("service", "", "instead: issue the certificate of the internal service whose OAuth client id is CLIENT_ID (for "+cluster.ServiceName("CLIENT_ID")+") from the CA in --dir")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dev-certs: unexpected arguments %v", fs.Args())
	}
	caCert, caKey := filepath.Join(*dir, "ca.crt"), filepath.Join(*dir, "ca.key")
	switch {
	case *edge != "" && *service != "":
		return errors.New("dev-certs: --edge or --service, not both")
	case *edge != "":
		m, err := devcerts.Issue(caCert, caKey, *dir, "edge-"+*edge, cluster.EdgeName, strings.Split(*hosts, ","))
		if err != nil {
			return err
		}
		fmt.Printf("edge %s: --role edge --cluster-tls-ca %s --cluster-tls-cert %s --cluster-tls-key %s\n", *edge, caCert, m.Cert, m.Key)
		return nil
	case *service != "":
		if !serviceClientID.MatchString(*service) {
			return fmt.Errorf("dev-certs: --service %q: an OAuth client id (letters, digits, '-')", *service)
		}
		m, err := devcerts.Issue(caCert, caKey, *dir, "service-"+*service, cluster.ServiceName(*service), nil)
		if err != nil {
			return err
		}
		fmt.Printf("service %s: CA %s, certificate %s, key %s\n", *service, caCert, m.Cert, m.Key)
		return nil
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

// serviceClientID is what a service certificate's name may carry: one DNS label.
var serviceClientID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,62}$`)

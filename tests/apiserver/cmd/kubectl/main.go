// Command kubectl is the upstream kubectl (k8s.io/kubectl, the same Kubernetes
// release as the API server here), so that nasop's tests can run the README's
// kubectl workflow without a kubectl installed on the machine.
package main

import (
	_ "k8s.io/client-go/plugin/pkg/client/auth" // exec and OIDC auth providers
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}

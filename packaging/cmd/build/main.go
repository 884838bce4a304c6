// Command build writes the .deb and .rpm of pkgswarm. Run it from the
// packaging directory:
//
//	go run ./cmd/build -out dist -version 0.3.1
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/pkgswarm/pkgswarm/packaging"
)

func main() {
	var o packaging.Options
	formats := flag.String("formats", "deb,rpm", "packages to build, comma-separated: deb, rpm")
	flag.StringVar(&o.SourceDir, "src", "..", "root of the pkgswarm main module")
	flag.StringVar(&o.OutDir, "out", "dist", "directory for the packages")
	flag.StringVar(&o.Version, "version", "", "package version (default: the commit's tag, else 0.0.0~dev+g<commit>)")
	flag.StringVar(&o.Arch, "arch", "", "Go architecture (default this machine's)")
	flag.StringVar(&o.Maintainer, "maintainer", "", "package maintainer, \"Name <address>\" (default "+packaging.DefaultMaintainer+")")
	flag.StringVar(&o.Overlay, "overlay", "", "go build -overlay file")
	flag.Parse()
	o.Formats = strings.Split(*formats, ",")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	paths, err := packaging.Build(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	for _, p := range paths {
		fmt.Println(p)
	}
}

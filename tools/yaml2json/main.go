// yaml2json converts a YAML document on stdin to JSON on stdout with
// sigs.k8s.io/yaml, the library behind k8s.io/apimachinery's yaml.ToJSON
// that krew reads plugin manifests with. YAML 1.1 typing applies: an
// unquoted 0123 or 1e5 is a number, yes/no are booleans, so the JSON shows
// each field's type exactly as krew's typed decode will see it.
package main

import (
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "yaml2json:", err)
		os.Exit(2)
	}
	out, err := yaml.YAMLToJSON(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "yaml2json:", err)
		os.Exit(1)
	}
	os.Stdout.Write(append(out, '\n'))
}

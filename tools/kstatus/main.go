// Command kstatus prints the status that kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), the
// library Flux, kpt and cli-utils judge resources with, computes for each object read on stdin.
//
// Input: YAML documents or JSON objects, one after another (a `kind: List` is read item by item).
// Output: one JSON object a line, in input order: {"name", "status", "message"}.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	decoder := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(in), 4096)
	encoder := json.NewEncoder(out)
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue // an empty YAML document
		}
		// The unstructured scheme keeps integers as int64, as the API machinery reads them.
		decoded, err := runtime.Decode(unstructured.UnstructuredJSONScheme, raw)
		if err != nil {
			return err
		}
		var items []unstructured.Unstructured
		switch object := decoded.(type) {
		case *unstructured.UnstructuredList:
			items = object.Items
		case *unstructured.Unstructured:
			items = []unstructured.Unstructured{*object}
		default:
			return fmt.Errorf("not an object: %s", raw)
		}
		for i := range items {
			u := &items[i]
			result, err := status.Compute(u)
			if err != nil {
				return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
			}
			if err := encoder.Encode(verdict{u.GetName(), result.Status.String(), result.Message}); err != nil {
				return err
			}
		}
	}
}

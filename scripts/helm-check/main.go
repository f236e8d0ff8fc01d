// helm-check renders a Helm chart the way `helm install` does (helm's own chart loader,
// values merging, values.schema.json check and template engine), runs helm's linter on it,
// and validates every rendered object against the Kubernetes JSON schemas with kubeconform
// (strict: unknown fields are errors, and a kind without a schema is an error too). No
// cluster and no network are needed: the schemas are read from a local folder.
//
//	helm-check -schemas DIR -kube-version 1.31.0 [-f values.yaml]... [-set k=v]... [-set-json k=json]... CHART
//
// It prints one JSON document: {"objects": [{"template", "kind", "name", "object",
// "status", "errors"}], "lint": [{"severity", "path", "message"}], "error": ""} and exits 0
// when every object is valid and the linter found no error, 1 otherwise, 2 on bad usage.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/yannh/kubeconform/pkg/resource"
	"github.com/yannh/kubeconform/pkg/validator"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"
)

type object struct {
	Template string         `json:"template"`
	Kind     string         `json:"kind"`
	Name     string         `json:"name"`
	Object   map[string]any `json:"object"`
	Status   string         `json:"status"`
	Errors   []string       `json:"errors"`
}

type lintMessage struct {
	Severity string `json:"severity"`
	Path     string `json:"path"`
	Message  string `json:"message"`
}

type report struct {
	Objects []object      `json:"objects"`
	Lint    []lintMessage `json:"lint"`
	Error   string        `json:"error"`
}

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var files, sets, setJSON, setString list
	schemas := flag.String("schemas", "", "folder with the Kubernetes JSON schemas, laid out as "+
		"<version>-standalone-strict/<kind>-<group>-<version>.json")
	kubeVersion := flag.String("kube-version", "1.31.0", "Kubernetes version to validate against")
	namespace := flag.String("namespace", "lookout", "release namespace")
	release := flag.String("name", "lookout", "release name")
	flag.Var(&files, "f", "a values file (repeatable)")
	flag.Var(&sets, "set", "a value, as helm --set (repeatable)")
	flag.Var(&setJSON, "set-json", "a JSON value, as helm --set-json (repeatable)")
	flag.Var(&setString, "set-string", "a string value, as helm --set-string (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 || *schemas == "" {
		fmt.Fprintln(os.Stderr, "usage: helm-check -schemas DIR [-kube-version V] [-f values.yaml] [-set k=v] CHART")
		os.Exit(2)
	}
	out, ok := check(flag.Arg(0), *schemas, *kubeVersion, *namespace, *release,
		values.Options{ValueFiles: files, Values: sets, JSONValues: setJSON, StringValues: setString})
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

func check(chartDir, schemas, kubeVersion, namespace, release string, opts values.Options) (report, bool) {
	out := report{Objects: []object{}, Lint: []lintMessage{}}
	fail := func(err error) (report, bool) { out.Error = err.Error(); return out, false }

	chrt, err := loader.Load(chartDir)
	if err != nil {
		return fail(fmt.Errorf("loading the chart: %w", err))
	}
	vals, err := opts.MergeValues(getter.Providers{})
	if err != nil {
		return fail(fmt.Errorf("reading the values: %w", err))
	}
	kv, err := chartutil.ParseKubeVersion("v" + kubeVersion)
	if err != nil {
		return fail(err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv

	// helm's linter: Chart.yaml, values against values.schema.json, templates.
	linter := lint.AllWithKubeVersion(chartDir, vals, namespace, kv)
	clean := true
	for _, m := range linter.Messages {
		severity := map[int]string{support.InfoSev: "info", support.WarningSev: "warning", support.ErrorSev: "error"}[m.Severity]
		out.Lint = append(out.Lint, lintMessage{Severity: severity, Path: m.Path, Message: m.Err.Error()})
		if m.Severity >= support.ErrorSev {
			clean = false
		}
	}

	// As `helm install`: the release's values (schema-checked), then the templates.
	renderValues, err := chartutil.ToRenderValues(chrt, vals,
		chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		return fail(err)
	}
	rendered, err := engine.Render(chrt, renderValues)
	if err != nil {
		return fail(err)
	}
	for name := range rendered { // NOTES.txt and partials are not objects
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(rendered, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(rendered, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return fail(fmt.Errorf("splitting the manifests: %w", err))
	}
	for _, h := range hooks {
		manifests = append(manifests, releaseutil.Manifest{Name: h.Path, Content: h.Manifest})
	}

	v, err := validator.New([]string{
		schemas + "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json",
	}, validator.Opts{Strict: true, KubernetesVersion: kubeVersion})
	if err != nil {
		return fail(err)
	}
	for _, m := range manifests {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(m.Content), &obj); err != nil {
			out.Objects = append(out.Objects, object{Template: m.Name, Status: "error", Errors: []string{err.Error()}})
			clean = false
			continue
		}
		if obj == nil {
			continue // an empty document (a template rendered to nothing)
		}
		o := object{Template: m.Name, Object: obj, Errors: []string{}}
		o.Kind, _ = obj["kind"].(string)
		if meta, ok := obj["metadata"].(map[string]any); ok {
			o.Name, _ = meta["name"].(string)
		}
		result := v.ValidateResource(resource.Resource{Path: m.Name, Bytes: []byte(m.Content)})
		switch result.Status {
		case validator.Valid:
			o.Status = "valid"
		case validator.Invalid:
			o.Status = "invalid"
			for _, e := range result.ValidationErrors {
				o.Errors = append(o.Errors, e.Path+": "+e.Msg)
			}
		case validator.Skipped, validator.Empty:
			o.Status = "skipped"
		default:
			o.Status = "error"
		}
		if result.Err != nil && len(o.Errors) == 0 {
			o.Errors = append(o.Errors, result.Err.Error())
		}
		if o.Status != "valid" {
			clean = false
		}
		out.Objects = append(out.Objects, o)
	}
	return out, clean
}

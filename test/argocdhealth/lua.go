package argocdhealth

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Status is what a health script returns.
type Status struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// The statuses Argo CD accepts from a health script.
var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

// ScriptPath is where the health check of group/kind lives under the
// repository root.
func ScriptPath(root, group, kind string) string {
	return filepath.Join(root, "config", "argocd", "health", group, kind, "health.lua")
}

// RunFile runs the script at path against obj.
func RunFile(path string, obj any) (Status, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Status{}, err
	}
	return Run(string(src), obj)
}

// Run runs script against obj, any value that marshals to a JSON object (an
// unstructured object's map, a typed API object). Like Argo CD, the object
// goes through its JSON form, so field names are the JSON ones.
func Run(script string, obj any) (Status, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return Status{}, fmt.Errorf("failed to marshal the object: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return Status{}, fmt.Errorf("failed to read the object as a JSON object: %w", err)
	}

	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Status{}, fmt.Errorf("failed to open the Lua %s library: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, m))
	if err := l.DoString(script); err != nil {
		return Status{}, fmt.Errorf("health script failed: %w", err)
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return Status{}, fmt.Errorf("health script returned %s, want a table", l.Get(-1).Type())
	}
	var st Status
	if err := json.Unmarshal([]byte(luaJSON(ret)), &st); err != nil {
		return Status{}, fmt.Errorf("health script returned an unreadable table: %w", err)
	}
	if !validStatuses[st.Status] {
		return st, fmt.Errorf("health script returned status %q, which Argo CD does not know", st.Status)
	}
	return st, nil
}

// toLua converts a decoded JSON value into Lua values: objects and arrays
// become tables (arrays 1-based), numbers LNumber, null nil.
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, e := range v {
			t.RawSetString(k, toLua(l, e))
		}
		return t
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, e := range v {
			t.Append(toLua(l, e))
		}
		return t
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}

// luaJSON renders the returned table's string fields as a JSON object.
func luaJSON(t *lua.LTable) string {
	out := map[string]string{}
	t.ForEach(func(k, v lua.LValue) {
		if ks, ok := k.(lua.LString); ok {
			out[string(ks)] = v.String()
		}
	})
	b, _ := json.Marshal(out)
	return string(b)
}

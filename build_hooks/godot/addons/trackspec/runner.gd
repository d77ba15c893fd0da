@tool
extends RefCounted
## Runs the trackspec command line for the editor plugin (blocking, like a compiler step).

const SETTING_EXECUTABLE := "trackspec/executable"
const SETTING_ROOT := "trackspec/root"


## Runs `trackspec build --root <root> <extra_args>` and waits for it.
## Returns {"code": exit code (-1: could not start), "output": stdout and stderr,
## "command": what ran}.
static func build(extra_args: PackedStringArray = PackedStringArray()) -> Dictionary:
	var exe := str(ProjectSettings.get_setting(SETTING_EXECUTABLE, "trackspec"))
	var root := str(ProjectSettings.get_setting(SETTING_ROOT, ""))
	if root.is_empty():
		root = "res://"
	root = ProjectSettings.globalize_path(root)
	var args := PackedStringArray(["build", "--root", root])
	args.append_array(extra_args)
	var output := []
	var code := OS.execute(exe, args, output, true)
	var text := ""
	for chunk in output:
		text += str(chunk)
	return {"code": code, "output": text.strip_edges(), "command": exe + " " + " ".join(args)}


## A message for a failed run, saying what to do.
static func describe_failure(result: Dictionary) -> String:
	if int(result["code"]) == -1:
		return (
			(
				"trackspec: could not run `%s`. Install trackspec (pip install trackspec) or set "
				+ "Project Settings > trackspec/executable to its full path."
			)
			% result["command"]
		)
	return (
		"trackspec build failed (exit %d): %s\n\n%s"
		% [int(result["code"]), result["command"], result["output"]]
	)

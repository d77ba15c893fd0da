@tool
extends RefCounted
## Runs the trackspec command line for the editor plugin (blocking, like a compiler step).

const SETTING_EXECUTABLE := "trackspec/executable"
const SETTING_ROOT := "trackspec/root"
const SETTING_INDEX := "trackspec/index"
const DEFAULT_INDEX := "res://assets/music/index.json"
## Formats Godot imports; trackspec writes the .import of ogg and mp3.
const IMPORTED := ["ogg", "mp3", "wav"]


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


## res:// path -> "<modified time of the file>:<of its .import>" for every file the music index
## lists, to tell after a build which ones it wrote.
static func music_files() -> Dictionary:
	var out := {}
	var index_path := str(ProjectSettings.get_setting(SETTING_INDEX, DEFAULT_INDEX))
	if not FileAccess.file_exists(index_path):
		return out
	var data = JSON.parse_string(FileAccess.get_file_as_string(index_path))
	if typeof(data) != TYPE_DICTIONARY or typeof(data.get("tracks")) != TYPE_DICTIONARY:
		return out
	var root := str(ProjectSettings.get_setting(SETTING_ROOT, ""))
	if root.is_empty():
		root = "res://"
	for entry in data["tracks"].values():
		var files = entry.get("files", {})
		for format in files:
			if not IMPORTED.has(format):
				continue
			var path := root.path_join(str(files[format]["path"])).simplify_path()
			out[path] = _stamp(path)
	return out


static func _stamp(path: String) -> String:
	var file_time := FileAccess.get_modified_time(path) if FileAccess.file_exists(path) else 0
	var import_path := path + ".import"
	var import_time := (
		FileAccess.get_modified_time(import_path) if FileAccess.file_exists(import_path) else 0
	)
	return "%d:%d" % [file_time, import_time]


## Re-imports, synchronously, every listed file that is new or whose file or .import changed
## since `before` (music_files() taken before the build). New folders need a scan first.
static func reimport_changed(filesystem: EditorFileSystem, before: Dictionary) -> void:
	var changed := PackedStringArray()
	var after := music_files()
	for path in after:
		if before.get(path, "") != after[path]:
			changed.append(path)
	if changed.is_empty():
		return
	for path in changed:
		if filesystem.get_filesystem_path(path.get_base_dir()) == null:
			filesystem.scan()  # a folder Godot has not seen: the scan imports it (in the background)
			return
		filesystem.update_file(path)
	filesystem.reimport_files(changed)

@tool
extends EditorExportPlugin
## Builds the music with `trackspec build` when an export begins.
## Godot gives export plugins no way to cancel an export: a failed build is reported with
## push_error (Output panel and export log). Gate release exports on `trackspec build --check`
## in CI (see build_hooks/README.md) to make a stale track fail the pipeline.

const Runner := preload("runner.gd")
const SETTING_BEFORE_EXPORT := "trackspec/build_before_export"


func _get_name() -> String:
	return "trackspec"


func _export_begin(
	_features: PackedStringArray, _is_debug: bool, _path: String, _flags: int
) -> void:
	if not ProjectSettings.get_setting(SETTING_BEFORE_EXPORT, true):
		return
	var before := Runner.music_files()
	var result := Runner.build()
	if int(result["code"]) != 0:
		push_error(
			Runner.describe_failure(result) + "\nThe export goes on with the music as it is."
		)
		return
	if Engine.is_editor_hint() and EditorInterface.get_resource_filesystem() != null:
		Runner.reimport_changed(EditorInterface.get_resource_filesystem(), before)

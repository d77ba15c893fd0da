@tool
extends EditorPlugin
## Builds the music with `trackspec build` before the project runs from the editor (F5, F6) and
## before an export, so the game never runs with music older than its .trackspec files.
## A failed build stops the run: the reason goes to the Output panel and a dialog. Files the
## build changed (audio or the .import settings it writes: loop, bpm) are re-imported before
## the game starts (EditorFileSystem.reimport_files blocks until they are).
## Project Settings (Advanced): trackspec/executable, trackspec/root, trackspec/build_before_run,
## trackspec/build_before_export.

const Runner := preload("runner.gd")
const ExportPlugin := preload("export_plugin.gd")

const SETTING_BEFORE_RUN := "trackspec/build_before_run"
## `trackspec build --no-wait` exits 3 when another trackspec process
## (`trackspec watch`) holds the repo.
const EXIT_LOCKED := 3

var _export_plugin: EditorExportPlugin


func _enter_tree() -> void:
	_add_setting(Runner.SETTING_EXECUTABLE, "trackspec", TYPE_STRING)
	_add_setting(Runner.SETTING_ROOT, "", TYPE_STRING)
	_add_setting(SETTING_BEFORE_RUN, true, TYPE_BOOL)
	_add_setting(ExportPlugin.SETTING_BEFORE_EXPORT, true, TYPE_BOOL)
	_export_plugin = ExportPlugin.new()
	add_export_plugin(_export_plugin)


func _exit_tree() -> void:
	remove_export_plugin(_export_plugin)
	_export_plugin = null


## Called by the editor before it runs the project; returning false cancels the run.
func _build() -> bool:
	if not ProjectSettings.get_setting(SETTING_BEFORE_RUN, true):
		return true
	var before := Runner.music_files()
	var result := Runner.build(PackedStringArray(["--no-wait"]))
	var code := int(result["code"])
	if code == 0:
		if not str(result["output"]).is_empty():
			print("trackspec: ", result["output"])
		# Synchronously, before the game starts: scan() would import in the background.
		Runner.reimport_changed(get_editor_interface().get_resource_filesystem(), before)
		return true
	if code == EXIT_LOCKED:
		push_warning(
			(
				"trackspec: another trackspec process (trackspec watch?) is building; "
				+ "running with the music as it is now"
			)
		)
		return true
	var message := Runner.describe_failure(result)
	push_error(message)
	_show_error(message)
	return false


func _show_error(message: String) -> void:
	var dialog := AcceptDialog.new()
	dialog.title = "trackspec build failed"
	dialog.dialog_text = message
	dialog.confirmed.connect(dialog.queue_free)
	dialog.canceled.connect(dialog.queue_free)
	get_editor_interface().get_base_control().add_child(dialog)
	dialog.popup_centered()


func _add_setting(setting: String, default_value: Variant, type: int) -> void:
	if not ProjectSettings.has_setting(setting):
		ProjectSettings.set_setting(setting, default_value)
	ProjectSettings.set_initial_value(setting, default_value)
	ProjectSettings.add_property_info({"name": setting, "type": type})

class_name TrackspecIndex
extends RefCounted
## The music index that `trackspec build` writes (assets/music/index.json), read at run time.
##
##     var music := TrackspecIndex.load_index()          # res://assets/music/index.json
##     $Music.stream = music.stream("phase1_calm_improved")
##     $Music.play()
##
## Paths in the index are relative to the trackspec root (the folder with trackspec.toml): pass
## its res:// path as `trackspec_root` when that is not the Godot project folder. Looping comes
## from the index's `loop` entry (a spec with `[output] loop = true`), as in the .import files.
## Exports: add `*.json` to the preset's "Filters to export non-resource files" so the index ships.

const DEFAULT_INDEX := "res://assets/music/index.json"
## Formats tried, in order, when a caller names none.
const FORMATS: Array[String] = ["ogg", "mp3", "wav"]

## Track name -> its index entry (spec, genre, files, duration, seed, meta, ...).
var tracks: Dictionary = {}
## res:// path of the trackspec root; index paths are joined to it.
var root := "res://"


## Reads the index at `path`; an unreadable index gives an empty one (and an error in the log).
static func load_index(
	path: String = DEFAULT_INDEX, trackspec_root: String = "res://"
) -> TrackspecIndex:
	var index := TrackspecIndex.new()
	index.root = trackspec_root
	if not FileAccess.file_exists(path):
		push_error("trackspec: no music index at %s (run trackspec build)" % path)
		return index
	var data = JSON.parse_string(FileAccess.get_file_as_string(path))
	if typeof(data) != TYPE_DICTIONARY or typeof(data.get("tracks")) != TYPE_DICTIONARY:
		push_error("trackspec: %s is not a trackspec index" % path)
		return index
	index.tracks = data["tracks"]
	return index


## Every track name, sorted.
func names() -> PackedStringArray:
	var out := PackedStringArray(tracks.keys())
	out.sort()
	return out


func has_track(track: String) -> bool:
	return tracks.has(track)


## The res:// path of a track's file in `format` (or the first of FORMATS it has); "" if none.
func path_of(track: String, format: String = "") -> String:
	var entry: Dictionary = tracks.get(track, {})
	var files: Dictionary = entry.get("files", {})
	var wanted: Array[String] = FORMATS if format.is_empty() else [format]
	for fmt in wanted:
		if files.has(fmt):
			return root.path_join(str(files[fmt]["path"]))
	return ""


## The track as an AudioStream (imported resource, or the raw file when not imported yet),
## looping as the index says: its `loop` entry (loop_offset = loop.start_seconds) and its
## `tempo` (bpm, beat_count, bar_beats) when the build measured one. The spec's [meta] is free
## data and plays no part. null (and an error in the log) if it cannot be loaded.
func stream(track: String, format: String = "") -> AudioStream:
	var path := path_of(track, format)
	if path.is_empty():
		push_error(
			(
				"trackspec: no track '%s' with a %s file in the music index"
				% [track, format if not format.is_empty() else "playable"]
			)
		)
		return null
	var audio: AudioStream = null
	if ResourceLoader.exists(path):
		audio = load(path) as AudioStream
	elif path.get_extension() == "ogg" and FileAccess.file_exists(path):
		audio = AudioStreamOggVorbis.load_from_file(path)
	elif path.get_extension() == "mp3" and FileAccess.file_exists(path):
		var mp3 := AudioStreamMP3.new()
		mp3.data = FileAccess.get_file_as_bytes(path)
		audio = mp3
	if audio == null:
		push_error("trackspec: cannot load %s (track '%s')" % [path, track])
		return null
	apply_loop(audio, tracks[track])
	return audio


## Sets `loop`, `loop_offset`, `bpm`, `beat_count` and `bar_beats` of `audio` from an index
## entry, as the build's .import sidecar does for imported files.
static func apply_loop(audio: AudioStream, entry: Dictionary) -> void:
	var loop = entry.get("loop")
	var looped := typeof(loop) == TYPE_DICTIONARY
	if "loop" in audio:
		audio.set("loop", looped)
	if looped and "loop_offset" in audio:
		audio.set("loop_offset", float(loop.get("start_seconds", 0.0)))
	var tempo = entry.get("tempo")
	if typeof(tempo) != TYPE_DICTIONARY or float(tempo.get("bpm", 0.0)) <= 0.0:
		return
	if "bpm" in audio:
		audio.set("bpm", float(tempo["bpm"]))
	if "bar_beats" in audio and int(tempo.get("bar_beats", 0)) >= 2:
		audio.set("bar_beats", int(tempo["bar_beats"]))
	if "beat_count" in audio and int(tempo.get("beats", 0)) > 0:
		var beats := int(tempo["beats"])
		if looped:
			# Godot ends a loop after beat_count beats: only when they end where the loop ends.
			var rate := float(entry.get("sample_rate", 0))
			var loop_end := float(int(loop["start"]) + int(loop["length"])) / maxf(rate, 1.0)
			if absf(beats * 60.0 / float(tempo["bpm"]) - loop_end) > 0.001:
				beats = 0
		audio.set("beat_count", beats)

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
## from the spec's [meta] table when present: `loop = true`, `loop_offset = <seconds>`.
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
## with loop settings from its [meta]; null (and an error in the log) if it cannot be loaded.
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
	var meta: Dictionary = tracks[track].get("meta", {})
	if meta.has("loop") and "loop" in audio:
		audio.set("loop", bool(meta["loop"]))
	if meta.has("loop_offset") and "loop_offset" in audio:
		audio.set("loop_offset", float(meta["loop_offset"]))
	return audio

// TrackspecIndex.cs: reads the asset index `trackspec build` writes, in the editor and at run time.
//
// Copy anywhere under Assets/ (not an Editor folder). Unity imports index.json as a TextAsset:
//
//     public TextAsset musicIndex;                       // drag Assets/Music/index.json here
//     var index = TrackspecIndex.Parse(musicIndex.text);
//     TrackspecIndex.Track boss = index.Tracks["boss"];
//     string path = index.ClipPath("boss");              // "Assets/Music/combat/boss.wav"
//     source.clip = bossClip;                            // the AudioClip at that path
//     TrackspecIndex.Play(source, boss);                 // loops when the spec says [output] loop = true
//
// Paths in the index are relative to the trackspec root (the folder with trackspec.toml); pass
// that folder relative to the Unity project as `root` when it is not the project folder.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using UnityEngine;

public class TrackspecIndex
{
    public class Loop
    {
        public long start;            // samples at sample_rate
        public long length;
        public double start_seconds;
    }

    public class Track
    {
        public string name;
        public string spec;
        public string genre;
        public Dictionary<string, string> files = new Dictionary<string, string>();  // format -> path
        public int sample_rate;
        public long samples;
        public double duration;
        public float ogg_quality = -2f;  // below -1: not in the index
        public Loop loop;                // null: the track does not loop
    }

    public readonly Dictionary<string, Track> Tracks = new Dictionary<string, Track>();
    public string Root = "";

    // Formats tried, in order, when a caller names none.
    public static readonly string[] Formats = { "wav", "flac", "ogg", "mp3" };

    public static TrackspecIndex Parse(string json, string root = "")
    {
        var index = new TrackspecIndex { Root = root ?? "" };
        var data = new Json(json).Value() as Dictionary<string, object>;
        if (data == null || !(data.TryGetValue("tracks", out object tracks) && tracks is Dictionary<string, object>))
        {
            throw new FormatException("not a trackspec index (no \"tracks\" object)");
        }
        foreach (KeyValuePair<string, object> pair in (Dictionary<string, object>)tracks)
        {
            var entry = (Dictionary<string, object>)pair.Value;
            var track = new Track { name = pair.Key };
            track.spec = entry.TryGetValue("spec", out object spec) ? spec as string : null;
            track.genre = entry.TryGetValue("genre", out object genre) ? genre as string : null;
            track.sample_rate = (int)Number(entry, "sample_rate");
            track.samples = (long)Number(entry, "samples");
            track.duration = Number(entry, "duration");
            if (entry.ContainsKey("ogg_quality"))
            {
                track.ogg_quality = (float)Number(entry, "ogg_quality");
            }
            if (entry.TryGetValue("files", out object files) && files is Dictionary<string, object>)
            {
                foreach (KeyValuePair<string, object> file in (Dictionary<string, object>)files)
                {
                    var info = file.Value as Dictionary<string, object>;
                    if (info != null && info.TryGetValue("path", out object path) && path is string)
                    {
                        track.files[file.Key] = (string)path;
                    }
                }
            }
            if (entry.TryGetValue("loop", out object loop) && loop is Dictionary<string, object>)
            {
                var points = (Dictionary<string, object>)loop;
                track.loop = new Loop
                {
                    start = (long)Number(points, "start"),
                    length = (long)Number(points, "length"),
                    start_seconds = Number(points, "start_seconds"),
                };
            }
            index.Tracks[pair.Key] = track;
        }
        return index;
    }

    // The project-relative path ("Assets/...") of a file path as the index stores it.
    public string AssetPath(string indexPath)
    {
        return string.IsNullOrEmpty(Root) ? indexPath : Root.TrimEnd('/') + "/" + indexPath;
    }

    // The asset path of a track's file in `format` (or the first of Formats it has); null if none.
    public string ClipPath(string track, string format = null)
    {
        if (!Tracks.TryGetValue(track, out Track entry))
        {
            return null;
        }
        foreach (string candidate in format != null ? new[] { format } : Formats)
        {
            if (entry.files.TryGetValue(candidate, out string path))
            {
                return AssetPath(path);
            }
        }
        return null;
    }

    // Plays `track` on `source` (its clip set by the caller), looping as the index says. A loop that
    // starts after the beginning is kept by a TrackspecLoop component, which jumps back each time.
    public static void Play(AudioSource source, Track track)
    {
        source.loop = track.loop != null;
        if (track.loop != null && track.loop.start > 0)
        {
            var looper = source.GetComponent<TrackspecLoop>() ?? source.gameObject.AddComponent<TrackspecLoop>();
            looper.source = source;
            looper.loopStart = (int)track.loop.start;
            looper.loopEnd = (int)(track.loop.start + track.loop.length);
        }
        source.Play();
    }

    static double Number(Dictionary<string, object> table, string key)
    {
        return table.TryGetValue(key, out object value) && value is double ? (double)value : 0.0;
    }

    // A small JSON reader (objects, arrays, strings, numbers, true, false, null): JsonUtility
    // cannot read dictionaries keyed by track name.
    class Json
    {
        readonly string text;
        int pos;

        public Json(string text)
        {
            this.text = text;
        }

        public object Value()
        {
            Skip();
            if (pos >= text.Length)
            {
                throw new FormatException("unexpected end of JSON");
            }
            char c = text[pos];
            if (c == '{')
            {
                var obj = new Dictionary<string, object>();
                pos++;
                Skip();
                if (text[pos] == '}')
                {
                    pos++;
                    return obj;
                }
                while (true)
                {
                    Skip();
                    string key = (string)Value();
                    Skip();
                    Expect(':');
                    obj[key] = Value();
                    Skip();
                    if (text[pos] == ',')
                    {
                        pos++;
                        continue;
                    }
                    Expect('}');
                    return obj;
                }
            }
            if (c == '[')
            {
                var list = new List<object>();
                pos++;
                Skip();
                if (text[pos] == ']')
                {
                    pos++;
                    return list;
                }
                while (true)
                {
                    list.Add(Value());
                    Skip();
                    if (text[pos] == ',')
                    {
                        pos++;
                        continue;
                    }
                    Expect(']');
                    return list;
                }
            }
            if (c == '"')
            {
                return String();
            }
            if (Word("true"))
            {
                return true;
            }
            if (Word("false"))
            {
                return false;
            }
            if (Word("null"))
            {
                return null;
            }
            int start = pos;
            while (pos < text.Length && "+-0123456789.eE".IndexOf(text[pos]) >= 0)
            {
                pos++;
            }
            return double.Parse(text.Substring(start, pos - start), CultureInfo.InvariantCulture);
        }

        string String()
        {
            var sb = new StringBuilder();
            pos++;
            while (text[pos] != '"')
            {
                char c = text[pos++];
                if (c != '\\')
                {
                    sb.Append(c);
                    continue;
                }
                char e = text[pos++];
                switch (e)
                {
                    case 'n': sb.Append('\n'); break;
                    case 't': sb.Append('\t'); break;
                    case 'r': sb.Append('\r'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'u':
                        sb.Append((char)Convert.ToInt32(text.Substring(pos, 4), 16));
                        pos += 4;
                        break;
                    default: sb.Append(e); break;
                }
            }
            pos++;
            return sb.ToString();
        }

        bool Word(string word)
        {
            if (string.CompareOrdinal(text, pos, word, 0, word.Length) != 0)
            {
                return false;
            }
            pos += word.Length;
            return true;
        }

        void Skip()
        {
            while (pos < text.Length && char.IsWhiteSpace(text[pos]))
            {
                pos++;
            }
        }

        void Expect(char c)
        {
            if (pos >= text.Length || text[pos] != c)
            {
                throw new FormatException("expected '" + c + "' at " + pos);
            }
            pos++;
        }
    }
}

// Keeps a loop that starts after the clip's beginning: the source loops the whole clip, and
// when it wraps to the start this jumps on to loopStart (the intro plays once). Frame-accurate
// rather than sample-accurate; for sample accuracy schedule two sources with PlayScheduled.
public class TrackspecLoop : MonoBehaviour
{
    public AudioSource source;
    public int loopStart;
    public int loopEnd;
    int last;

    void Update()
    {
        if (source == null || !source.isPlaying)
        {
            return;
        }
        int now = source.timeSamples;
        if (now < last && now < loopStart)
        {
            source.timeSamples = loopStart + now;
        }
        last = source.timeSamples;
    }
}

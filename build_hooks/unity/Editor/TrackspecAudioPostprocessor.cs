// TrackspecAudioPostprocessor.cs: imports the music trackspec builds the way music should be
// imported: streamed from disk, Vorbis-compressed at the spec's quality, not preloaded.
//
// Copy into any Editor folder of the Unity project (e.g. Assets/Editor/), beside
// TrackspecPreBuild.cs. It applies to the files the asset index lists (index = "Assets/Music/
// index.json" in trackspec.toml, or EditorPrefs "Trackspec.Index"); other audio is left alone.
// Unity re-encodes every audio file it imports, so let trackspec write lossless files
// (`trackspec init --engine unity` sets formats = ["wav"]; "flac" works too) and let this
// script choose the compression: one lossy pass, not two.
//
// Quality: the index entry's `ogg_quality` (the spec's [output] ogg_quality, -1..10) mapped to
// Unity's 0..1; without one, DefaultQuality. Changing this file's Version re-imports every clip.

using System;
using System.Collections.Generic;
using System.IO;
using UnityEditor;
using UnityEngine;

public class TrackspecAudioPostprocessor : AssetPostprocessor
{
    // Bump when the settings below change: Unity re-imports the assets this postprocessor touched.
    const uint Version = 1;
    const float DefaultQuality = 0.6f;
    const string DefaultIndex = "Assets/Music/index.json";

    public override uint GetVersion()
    {
        return Version;
    }

    void OnPreprocessAudio()
    {
        TrackspecIndex.Track track = ListedTrack(assetPath);
        if (track == null)
        {
            return;
        }
        var importer = (AudioImporter)assetImporter;
        AudioImporterSampleSettings settings = importer.defaultSampleSettings;
        settings.loadType = AudioClipLoadType.Streaming;
        settings.compressionFormat = AudioCompressionFormat.Vorbis;
        settings.quality = track.ogg_quality >= -1f
            ? Mathf.Clamp01((track.ogg_quality + 1f) / 11f)
            : DefaultQuality;
        settings.preloadAudioData = false;
        importer.defaultSampleSettings = settings;
        importer.loadInBackground = true;
    }

    static string IndexPath()
    {
        string configured = EditorPrefs.GetString("Trackspec.Index", "");
        return string.IsNullOrEmpty(configured) ? DefaultIndex : configured;
    }

    static TrackspecIndex cached;
    static string cachedKey;

    // The index entry whose files include `path` (relative to the Unity project), or null. The
    // index is parsed once per change of the file, not once per imported clip.
    static TrackspecIndex.Track ListedTrack(string path)
    {
        string indexPath = IndexPath();
        if (!File.Exists(indexPath))
        {
            return null;
        }
        string key = indexPath + "@" + File.GetLastWriteTimeUtc(indexPath).Ticks;
        if (key != cachedKey)
        {
            try
            {
                cached = TrackspecIndex.Parse(File.ReadAllText(indexPath), RootRelativeToProject());
                cachedKey = key;
            }
            catch (Exception e)
            {
                Debug.LogWarning("trackspec: cannot read " + indexPath + ": " + e.Message);
                return null;
            }
        }
        string wanted = path.Replace('\\', '/');
        foreach (KeyValuePair<string, TrackspecIndex.Track> pair in cached.Tracks)
        {
            foreach (string file in pair.Value.files.Values)
            {
                if (cached.AssetPath(file) == wanted)
                {
                    return pair.Value;
                }
            }
        }
        return null;
    }

    // The trackspec root (TRACKSPEC_ROOT / EditorPrefs "Trackspec.Root", as TrackspecPreBuild reads
    // it) relative to the Unity project folder: "" when it is the project folder.
    static string RootRelativeToProject()
    {
        string project = Directory.GetParent(Application.dataPath).FullName;
        string root = Environment.GetEnvironmentVariable("TRACKSPEC_ROOT");
        if (string.IsNullOrEmpty(root))
        {
            root = EditorPrefs.GetString("Trackspec.Root", "");
        }
        if (string.IsNullOrEmpty(root))
        {
            return "";
        }
        string relative = Path.GetRelativePath(project, Path.GetFullPath(Path.Combine(project, root)));
        return relative == "." ? "" : relative.Replace('\\', '/');
    }
}

// TrackspecPreBuild.cs: builds the game's music with `trackspec build` before every Unity player
// build; a failed build fails the player build (BuildFailedException) with trackspec's output.
//
// Copy into any Editor folder of the Unity project (e.g. Assets/Editor/). Settings, all optional:
//   TRACKSPEC            the trackspec executable (default: "trackspec" on PATH)
//   TRACKSPEC_ROOT       the folder with trackspec.toml (default: the Unity project folder,
//                        the parent of Assets/); point trackspec.toml's `assets` into Assets/,
//                        e.g. assets = "Assets/Music" and index = "Assets/Music/index.json"
// (environment variables, or EditorPrefs keys "Trackspec.Executable" / "Trackspec.Root").
// Menu: Tools > Trackspec > Build Music runs the same build by hand.

using System;
using System.ComponentModel;
using System.Diagnostics;
using System.IO;
using UnityEditor;
using UnityEditor.Build;
using UnityEditor.Build.Reporting;

public class TrackspecPreBuild : IPreprocessBuildWithReport
{
    // Run early, so later preprocessors see the fresh assets.
    public int callbackOrder { get { return -100; } }

    public void OnPreprocessBuild(BuildReport report)
    {
        string output;
        int code = RunBuild(out output);
        if (code != 0)
        {
            throw new BuildFailedException(Describe(code, output));
        }
        UnityEngine.Debug.Log("trackspec build:\n" + output);
        AssetDatabase.Refresh();  // import new or changed music before the player is built
    }

    [MenuItem("Tools/Trackspec/Build Music")]
    public static void BuildFromMenu()
    {
        string output;
        int code = RunBuild(out output);
        if (code != 0)
        {
            UnityEngine.Debug.LogError(Describe(code, output));
            return;
        }
        UnityEngine.Debug.Log("trackspec build:\n" + output);
        AssetDatabase.Refresh();
    }

    static string Setting(string env, string pref, string fallback)
    {
        string value = Environment.GetEnvironmentVariable(env);
        if (string.IsNullOrEmpty(value))
        {
            value = EditorPrefs.GetString(pref, "");
        }
        return string.IsNullOrEmpty(value) ? fallback : value;
    }

    // Runs `trackspec build --root <root>`; returns its exit code (-1: it could not be started).
    static int RunBuild(out string output)
    {
        string projectRoot = Directory.GetParent(UnityEngine.Application.dataPath).FullName;
        string exe = Setting("TRACKSPEC", "Trackspec.Executable", "trackspec");
        string root = Path.GetFullPath(Setting("TRACKSPEC_ROOT", "Trackspec.Root", projectRoot));
        var start = new ProcessStartInfo
        {
            FileName = exe,
            Arguments = "build --root \"" + root + "\"",
            WorkingDirectory = root,
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            CreateNoWindow = true,
        };
        try
        {
            using (Process process = Process.Start(start))
            {
                // Read both streams at once: a full pipe would otherwise block the build.
                var stdout = process.StandardOutput.ReadToEndAsync();
                var stderr = process.StandardError.ReadToEndAsync();
                process.WaitForExit();
                output = (stdout.Result + stderr.Result).Trim();
                return process.ExitCode;
            }
        }
        catch (Win32Exception e)
        {
            output = "could not run `" + exe + "`: " + e.Message
                + ". Install trackspec (pip install trackspec) or set TRACKSPEC to its full path.";
            return -1;
        }
    }

    static string Describe(int code, string output)
    {
        return "trackspec build failed (exit " + code + "); the player build stops.\n" + output;
    }
}

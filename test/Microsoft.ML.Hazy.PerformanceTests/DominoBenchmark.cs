using System.Diagnostics;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Slicing;

namespace Microsoft.ML.Hazy.PerformanceTests;

/// <summary>
/// Fit time of the Domino slicer on 512-dimensional embeddings with 25 components, at 10k and 100k rows: the whole
/// ML.NET Fit (read the IDataView, PCA to 128, EM, build the ONNX scoring chain) and the mixture alone, against a
/// plain diagonal Gaussian mixture (γ = γ̂ = 0, k-means start) fitted in the same process.
/// </summary>
internal static class DominoBenchmark
{
    public const string Description =
        "Domino fit on 10k and 100k rows × 512 dims, k = 25 (PCA 128): ML.NET Fit and mixture alone vs a plain diagonal GMM";

    private const int Dimensions = 512;
    private const int Components = 25;
    private const int Clusters = 25;
    private static readonly int[] Sizes = [10_000, 100_000];

    private sealed class Row
    {
        public float[] Features = Array.Empty<float>();
        public bool Label;
        public float Probability;
    }

    public static int Run(BenchmarkArgs args)
    {
        string? jsonPath = args.String("json");
        args.EnsureAllUsed();
        var total = Stopwatch.StartNew();
        var machine = Harness.Machine();
        var notes = new List<string>();
        Harness.NoteIfBusy(machine, notes);

        var results = new List<(int Rows, Measurement Fit, Measurement Mixture, Measurement Gmm, int Iterations, int GmmIterations)>();
        foreach (int rows in Sizes)
        {
            var (x, y, p) = Generate(rows, seed: rows);
            var ml = new MLContext(1);
            var schema = SchemaDefinition.Create(typeof(Row));
            schema["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, Dimensions);
            var data = ml.Data.Cache(ml.Data.LoadFromEnumerable(Enumerable.Range(0, rows).Select(i => new Row
            {
                Features = x.AsSpan(i * Dimensions, Dimensions).ToArray(),
                Label = y[i],
                Probability = p[i],
            }), schema));
            var options = new DominoEstimator.Options { PredictionColumnName = "Probability", NumberOfComponents = Components, Seed = 1 };
            var domino = ml.Hazy().Slicing.Domino(options);
            int warmups = rows <= 10_000 ? 1 : 0, repetitions = rows <= 10_000 ? 3 : 1;
            Console.WriteLine($"{Harness.FormatCount(rows)} rows × {Dimensions}: timing {warmups} warm-up and {repetitions} timed run(s) per method ...");

            DominoTransformer? fitted = null;
            var fit = Harness.Measure($"Domino ML.NET Fit, {Harness.FormatCount(rows)} rows", () => fitted = domino.Fit(data), warmups, repetitions, rows);
            var rowsArrays = new DominoRows(x, OneHot(y), Binary(p), rows);
            DominoModelParameters? model = null;
            var mixture = Harness.Measure($"Domino mixture alone, {Harness.FormatCount(rows)} rows",
                () => model = DominoFitter.Fit(rowsArrays, Dimensions, 2, options, 1, null, default, out _), warmups, repetitions, rows);
            var gmmOptions = new DominoEstimator.Options { NumberOfComponents = Components, LabelWeight = 0, PredictionWeight = 0, Initialization = DominoInitialization.KMeans };
            DominoModelParameters? gmm = null;
            var plain = Harness.Measure($"Plain diagonal GMM, {Harness.FormatCount(rows)} rows",
                () => gmm = DominoFitter.Fit(rowsArrays, Dimensions, 2, gmmOptions, 1, null, default, out _), warmups, repetitions, rows);
            results.Add((rows, fit, mixture, plain, model!.Iterations, gmm!.Iterations));
            Console.WriteLine($"  Domino: {model.Iterations} EM iterations (converged: {model.Converged}); GMM: {gmm.Iterations} (converged: {gmm.Converged}); "
                + $"slice 0 gap {fitted!.Model.GetGap(fitted.Model.SliceComponents[0]):F2}.");
        }

        Console.WriteLine();
        Console.WriteLine($"Fit time, {Dimensions} dims, k = {Components}, PCA to 128 (median of the timed runs):");
        var table = new ResultTable("method", "rows", "seconds", "rows/s", "EM iterations", "ratio vs plain GMM");
        foreach (var r in results)
        {
            table.AddRow(r.Fit.Name, Harness.FormatCount(r.Rows), (r.Fit.MedianMs / 1000).ToString("F2"), Harness.FormatCount((long)r.Fit.ItemsPerSecond), r.Iterations.ToString(), Harness.FormatRatio(r.Fit.SpeedupOver(r.Gmm)));
            table.AddRow(r.Mixture.Name, Harness.FormatCount(r.Rows), (r.Mixture.MedianMs / 1000).ToString("F2"), Harness.FormatCount((long)r.Mixture.ItemsPerSecond), r.Iterations.ToString(), Harness.FormatRatio(r.Mixture.SpeedupOver(r.Gmm)));
            table.AddRow(r.Gmm.Name, Harness.FormatCount(r.Rows), (r.Gmm.MedianMs / 1000).ToString("F2"), Harness.FormatCount((long)r.Gmm.ItemsPerSecond), r.GmmIterations.ToString(), "1.00x");
        }
        table.Print(Console.Out);
        Console.WriteLine("ratio: the plain GMM's time over the method's (above 1 is faster); iteration counts differ, so per-iteration cost is seconds / iterations.");
        Harness.WarnIfNoisy(Console.Out, results.SelectMany(r => new[] { r.Fit, r.Mixture, r.Gmm }));
        Console.WriteLine($"Whole run: {total.Elapsed.TotalSeconds:F0} s.");

        if (jsonPath is not null)
        {
            var report = new BenchmarkReport
            {
                Benchmark = "domino",
                Machine = machine,
                Parameters = new()
                {
                    ["dimensions"] = Dimensions,
                    ["components"] = Components,
                    ["pcaComponents"] = 128,
                    ["sizes"] = Sizes,
                    ["data"] = $"synthetic: {Clusters} Gaussian clusters, binary labels, a model wrong on 3 clusters",
                },
                Baseline = "Plain diagonal GMM",
                Results = results.SelectMany(r => new[]
                {
                    Harness.Entry(r.Fit, r.Gmm, new Dictionary<string, object?> { ["rows"] = r.Rows, ["emIterations"] = r.Iterations }),
                    Harness.Entry(r.Mixture, r.Gmm, new Dictionary<string, object?> { ["rows"] = r.Rows, ["emIterations"] = r.Iterations }),
                    Harness.Entry(r.Gmm, r.Gmm, new Dictionary<string, object?> { ["rows"] = r.Rows, ["emIterations"] = r.GmmIterations }),
                }).ToList(),
                Extra = new() { ["totalSeconds"] = Math.Round(total.Elapsed.TotalSeconds, 2) },
                Notes = notes,
            };
            Harness.WriteJson(jsonPath, report);
        }
        return 0;
    }

    // Rows around 25 random centres (N(0, 4I)) with unit noise; the label is the centre's parity, and the model is wrong on centres 0-2.
    private static (float[] X, bool[] Y, float[] P) Generate(int rows, int seed)
    {
        var rng = new Random(seed);
        var centers = new float[Clusters * Dimensions];
        for (int i = 0; i < centers.Length; i++)
            centers[i] = (float)(2 * Gaussian(rng));
        var x = new float[rows * Dimensions];
        var y = new bool[rows];
        var p = new float[rows];
        for (int i = 0; i < rows; i++)
        {
            int c = rng.Next(Clusters);
            for (int j = 0; j < Dimensions; j++)
                x[i * Dimensions + j] = centers[c * Dimensions + j] + (float)Gaussian(rng);
            y[i] = c % 2 == 1;
            bool right = c >= 3;
            p[i] = y[i] == right ? 0.9f : 0.1f;
        }
        return (x, y, p);
    }

    private static double[] OneHot(bool[] y) => y.SelectMany(v => v ? new[] { 0.0, 1.0 } : new[] { 1.0, 0.0 }).ToArray();

    private static double[] Binary(float[] p) => p.SelectMany(v => new[] { 1.0 - v, v }).ToArray();

    private static double Gaussian(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}

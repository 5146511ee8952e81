using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.SamplesSupport;
using Microsoft.ML.Hazy.Slicing;
using Microsoft.ML.Hazy.Slicing.Evaluation;
using Microsoft.ML.Hazy.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace Hazy.Samples;

/// <summary>
/// Domino on Fashion-MNIST. Part 1 evaluates slice discovery methods on up to 60 settings built on real embeddings
/// (--encoder: ImageNet ResNet18 features by default, or a Hazy MLP's or CNN's penultimate layer): rare, correlation and
/// noisy-label slices, 20 each, with a model that errs on the slice. --predictions picks that model: per-setting (default;
/// as dcbench, a model, by default a small Hazy CNN, trained per setting on rows with the slice's property, and only
/// settings where it errs on the slice kept), trained (a softmax regression's own predictions, corrupted inside the
/// slice at the setting's error rate) or synthetic (Domino's synthesize_preds: Beta draws with sensitivity 0.8 outside
/// the slice). Part 2 runs Domino on the errors of the encoder's own classifier and prints its slices and descriptions.
/// Writes <c>metrics.json</c>.
/// </summary>
internal static class DominoSample
{
    private const int Pixels = FashionMnist.ImageSize * FashionMnist.ImageSize;
    private const int SettingRows = 2500;
    private const int SettingsPerType = 20;
    private const int ModelTrainingRows = 2000;
    private const string WordList = "/usr/share/dict/american-english";

    // Coarse classes: tops {T-shirt/top, Pullover, Coat, Shirt}, footwear {Sandal, Sneaker, Ankle boot}, other {Trouser, Dress, Bag}.
    private static readonly int[] Coarse = [0, 2, 0, 2, 0, 1, 0, 1, 2, 1];
    private static readonly string[] CoarseNames = ["top", "footwear", "other"];

    /// <summary>Images read into memory: fine labels, pixels and two visual attributes.</summary>
    private sealed record Images(int[] Labels, float[] Pixels, double[] Intensity, double[] Area)
    {
        public int Count => Labels.Length;
    }

    /// <summary>One evaluation setting: validation rows to fit on, test rows to score, and the true slice of the test rows.</summary>
    private sealed record Setting(string Name, string Type, SliceDiscoveryData Validation, SliceDiscoveryData Test, bool[] TestSlice, double SliceErrorRate, double OtherErrorRate,
        double ValidationSliceErrorRate, double ValidationOtherErrorRate)
    {
        /// <summary>
        /// A slice discovery problem needs a model that errs on the slice: on the validation rows (what the methods are
        /// fitted on; never the test rows or any method's output) at least 20 % errors inside the slice and twice the rate
        /// outside. Planted predictions meet this by construction; a per-setting model often does not.
        /// </summary>
        public bool ModelErrsOnSlice => ValidationSliceErrorRate >= 0.2 && ValidationSliceErrorRate >= 2 * ValidationOtherErrorRate;
    }

    public static int Run(SampleContext context)
    {
        var total = Stopwatch.StartNew();
        var output = context.OutputDirectory;
        Directory.CreateDirectory(output);
        var ct = context.CancellationToken;
        AnsiConsole.Write(new Rule("[bold]Hazy.ML Domino[/]: slice discovery on Fashion-MNIST").LeftJustified());

        // --encoder: resnet18 (default; ImageNet ResNet18, 512 values: like the paper's CLIP image encoder it is pretrained
        // and never saw these labels), mlp (the 128-wide penultimate layer of a Hazy MLP trained on the 10 classes),
        // cnn-pool (a Hazy CNN's last conv block averaged over positions: 32 values) or cnn (that block flattened: 1,568
        // values). --predictions: per-setting (default), trained or synthetic (see the class summary); --setting-model: the
        // per-setting model, cnn (default) or linear.
        var encoderKind = context.Choice("encoder", "resnet18");
        var predictionKind = context.Choice("predictions", "per-setting");
        var mode = predictionKind switch
        {
            "synthetic" => PredictionMode.Synthetic,
            "trained" => PredictionMode.Trained,
            "per-setting" => PredictionMode.PerSetting,
            _ => throw new ArgumentException($"--predictions must be synthetic, trained or per-setting; found '{predictionKind}'."),
        };
        var ml = new MLContext(seed: 1);
        var source = FashionMnistData.LoadDefault(ml);
        if (source.IsSubset)
        {
            Console.Error.WriteLine($"error: The domino sample draws 2,500-row settings from pools of thousands of images, so it needs the full Fashion-MNIST; found only the shipped subset in {source.Directory}. Install it with `bash eng/install-test-data.sh` as root (Debian's dataset-fashion-mnist).");
            return 1;
        }
        var train = ReadImages(source.Train);
        var test = ReadImages(source.Test);
        AnsiConsole.MarkupLine(Invariant($"Data: {train.Count:N0} train and {test.Count:N0} test images from [grey]{Markup.Escape(source.Directory)}[/]"));

        // Train images: the first half trains the encoder, the next 8 % the model whose errors are sliced, the rest is the validation pool.
        int encoderRows = train.Count / 2, modelRows = train.Count * 8 / 100;
        var encoderIdx = Enumerable.Range(0, encoderRows).ToArray();
        var modelIdx = Enumerable.Range(encoderRows, modelRows).ToArray();
        var valPool = Enumerable.Range(encoderRows + modelRows, train.Count - encoderRows - modelRows).ToArray();
        var testPool = Enumerable.Range(0, test.Count).ToArray();
        if (encoderKind == "resnet18")
        {
            // ResNet18 takes about 20 ms per image on 2 cores: embed 8,000 validation and 6,000 test images, enough for
            // every setting's 2,500-row draws.
            valPool = valPool[..Math.Min(8000, valPool.Length)];
            testPool = testPool[..Math.Min(6000, testPool.Length)];
        }

        // 1. The encoder, trained on the 10 classes: a Hazy CNN (conv 16 → conv 32, stride 2) whose last conv block, averaged
        // over its 7×7 positions (cnn-pool) or flattened (cnn), is the embedding; or a Hazy MLP whose 128-wide penultimate
        // layer is; or ImageNet ResNet18, untrained here. The paper embeds images with a pretrained image encoder (CLIP); a
        // pretrained convolutional network is the closest stand-in, since visual attributes (brightness, size) survive in its
        // features while a classifier trained on the task's labels learns to ignore them.
        var clock = Stopwatch.StartNew();
        var encoderData = ml.Data.Cache(ImagesView(ml, train, encoderIdx));
        HazyPredictionTransformer? encoder = null;
        string encoderName;
        float[] trainEmb = [], testEmb = [], testProbs = [];
        int dims = 0;
        if (encoderKind == "resnet18")
        {
            // No training: ImageNet weights. The classifier whose errors part 4 slices is a linear probe (softmax regression)
            // on the validation pool's features, for the 10 classes.
            using var resnet = new ResNet18Embedder();
            dims = ResNet18Embedder.Dimensions;
            trainEmb = Scatter(CachedEmbeddings(context, "train", train, valPool, resnet, ct), valPool, train.Count, dims);
            testEmb = Scatter(CachedEmbeddings(context, "test", test, testPool, resnet, ct), testPool, test.Count, dims);
            var probe = ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy().Fit(ml.Data.Cache(View(ml, trainEmb, dims, valPool, r => train.Labels[r], 10)));
            var probs = Scores(probe, View(ml, testEmb, dims, testPool, r => test.Labels[r], 10), testPool.Length, 10);
            testProbs = Scatter(probs, testPool, test.Count, 10);
            encoderName = "ResNet18 (ImageNet weights), global average pool";
        }
        else if (encoderKind == "mlp")
        {
            var encoderOptions = new MlpTrainer.Options
            {
                HiddenLayers = [256, 128], NumberOfEpochs = 5, BatchSize = 128, LearningRate = 2e-3, WeightDecay = 1e-4,
                Schedule = LearningRateSchedule.Cosine, Seed = 1, CancellationToken = ct,
            };
            encoder = ml.MulticlassClassification.Trainers.HazyMlp(encoderOptions).Fit(encoderData);
            encoderName = "MLP [[256, 128]], penultimate layer";
        }
        else
        {
            var cnnOptions = new CnnTrainer.Options { Height = 28, Width = 28, NumberOfEpochs = 3, Seed = 1, CancellationToken = ct };
            encoder = ml.MulticlassClassification.Trainers.HazyCnn(cnnOptions).Fit(encoderData);
            encoderName = encoderKind == "cnn" ? "CNN [[16, 32]], last conv block flattened" : "CNN [[16, 32]], last conv block average-pooled";
        }
        using var encoderScope = encoder;
        if (encoder is not null)
        {
            bool pool = encoderKind == "cnn-pool";
            (trainEmb, _) = Embed(encoder.Network, train, pool);
            (testEmb, testProbs) = Embed(encoder.Network, test, pool);
            dims = trainEmb.Length / train.Count;
        }
        double encoderAccuracy = Accuracy(testProbs, test.Labels, 10, testPool);
        double encoderSeconds = clock.Elapsed.TotalSeconds;
        AnsiConsole.MarkupLine(encoder is null
            ? Invariant($"Encoder: {encoderName} in {encoderSeconds:F0} s; a linear probe on {valPool.Length:N0} images reaches test accuracy {encoderAccuracy:P1}; embeddings of {dims} values.")
            : Invariant($"Encoder: {encoderName}, trained on {encoderRows:N0} images in {encoderSeconds:F0} s, test accuracy {encoderAccuracy:P1}; embeddings of {dims} values."));

        // 2. The model that is sliced: softmax regression on the pixels, for the 3 coarse classes.
        clock.Restart();
        var modelData = ml.Data.Cache(ImagesView(ml, train, modelIdx, coarse: true));
        var model = ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy().Fit(modelData);
        var valCoarse = Scores(model, ImagesView(ml, train, valPool, coarse: true), valPool.Length, 3);
        var modelCoarse = Scores(model, ImagesView(ml, train, modelIdx, coarse: true), modelIdx.Length, 3);
        var testCoarse = Scores(model, ImagesView(ml, test, testPool, coarse: true), testPool.Length, 3);
        double modelAccuracy = Accuracy(testCoarse, testPool.Select(i => Coarse[test.Labels[i]]).ToArray(), 3);
        AnsiConsole.MarkupLine(Invariant($"Sliced model: softmax regression on pixels for top / footwear / other, trained on {modelRows:N0} images in {clock.Elapsed.TotalSeconds:F0} s, test accuracy {modelAccuracy:P1}."));

        // 3. Settings and methods.
        var valView = new PoolView(train, valPool, trainEmb, dims, valCoarse);
        var testView = new PoolView(test, testPool, testEmb, dims, testCoarse);
        var modelView = new PoolView(train, modelIdx, trainEmb, dims, modelCoarse);
        clock.Restart();
        var settingModel = context.Choice("setting-model", "cnn");
        double dominoWeight = context.Text("domino-weight") is { } w ? double.Parse(w, CultureInfo.InvariantCulture) : new DominoEstimator.Options().LabelWeight;
        var settings = BuildSettings(new SettingContext(ml, valView, testView, modelView, mode, settingModel == "cnn"), out var tried);
        AnsiConsole.MarkupLine(Invariant($"Settings: {settings.Count} kept of {tried.Values.Sum()} candidates ({string.Join(", ", tried.Select(t => $"{settings.Count(x => x.Type == t.Key)} of {t.Value} {t.Key}"))}) in {clock.Elapsed.TotalSeconds:F0} s; slice error rate {settings.Average(x => x.SliceErrorRate):P1}, elsewhere {settings.Average(x => x.OtherErrorRate):P1} (test rows, mean over settings)."));
        ISliceDiscoveryMethod[] methods =
        [
            new DominoSliceDiscovery("Domino", new DominoEstimator.Options { LabelWeight = dominoWeight, PredictionWeight = dominoWeight }),
            new ConfusionMatrixSliceDiscovery(),
            DominoSliceDiscovery.GaussianMixture(),
            new PerClassMixtureSliceDiscovery(),
        ];
        var results = new List<SettingResult>();
        AnsiConsole.Progress().AutoClear(true).Start(progress =>
        {
            var task = progress.AddTask(Invariant($"Slice discovery: {settings.Count} settings × {methods.Length} methods"), maxValue: settings.Count);
            foreach (var s in settings)
            {
                ct.ThrowIfCancellationRequested();
                int budget = Math.Max(5, s.Test.Classes * s.Test.Classes);
                foreach (var method in methods)
                {
                    var watch = Stopwatch.StartNew();
                    var scores = method.FitPredict(s.Validation, s.Test, budget, seed: 1);
                    double seconds = watch.Elapsed.TotalSeconds;
                    var match = SliceDiscoveryMetrics.Match(s.TestSlice, scores);
                    results.Add(new SettingResult(s.Name, s.Type, method.Name, match.AveragePrecision, match.PrecisionAt10, match.PrecisionAt25,
                        match.PredictedSlice, match.Complement, Math.Round(seconds, 3), s.TestSlice.Count(x => x), s.SliceErrorRate, s.OtherErrorRate));
                }
                task.Increment(1);
            }
        });

        var types = new[] { "rare", "correlation", "noisy" };
        var summary = new List<MethodSummary>();
        foreach (var method in methods.Select(m => m.Name))
        {
            foreach (var type in types.Append("all"))
            {
                var rows = results.Where(r => r.Method == method && (type == "all" || r.Type == type)).ToArray();
                summary.Add(new MethodSummary(method, type, rows.Length, Math.Round(rows.Average(r => r.PrecisionAt10), 4), Math.Round(rows.Average(r => r.AveragePrecision), 4),
                    Math.Round(rows.Average(r => r.PrecisionAt25), 4), Math.Round(rows.Average(r => r.FitSeconds), 3)));
            }
        }
        var table = new Table().Title(Invariant($"Mean precision@10 / AP over {settings.Count} settings (test rows {SettingRows:N0})")).AddColumn("Method");
        foreach (var type in types.Append("all"))
            table.AddColumn(new TableColumn(Invariant($"{type} (n={settings.Count(s => type == "all" || s.Type == type)})")).RightAligned());
        table.AddColumn(new TableColumn("fit s").RightAligned());
        foreach (var method in methods.Select(m => m.Name))
        {
            var cells = types.Append("all").Select(t => summary.Single(x => x.Method == method && x.SliceType == t)).Select(x => Invariant($"{x.MeanPrecisionAt10:F3} / {x.MeanAveragePrecision:F3}")).ToList();
            cells.Insert(0, method);
            cells.Add(Invariant($"{summary.Single(x => x.Method == method && x.SliceType == "all").MeanFitSeconds:F2}"));
            table.AddRow(cells.ToArray());
        }
        AnsiConsole.Write(table);
        var dominoAll = summary.Single(x => x.Method == "Domino" && x.SliceType == "all").MeanPrecisionAt10;
        var bestBaseline = summary.Where(x => x.Method != "Domino" && x.SliceType == "all").MaxBy(x => x.MeanPrecisionAt10)!;
        AnsiConsole.MarkupLine(Invariant($"Domino mean precision@10 {dominoAll:F3} vs best baseline {bestBaseline.Method} {bestBaseline.MeanPrecisionAt10:F3}: {100 * (dominoAll - bestBaseline.MeanPrecisionAt10):+0.0;-0.0} points."));

        // 4. Domino on the MLP's own errors on the test split.
        var (errorSlices, report) = SliceTheEncoder(ml, test, testPool, testEmb, testProbs, dims, valView, ct);

        var metrics = new DominoMetrics(
            encoderKind, predictionKind, mode == PredictionMode.PerSetting ? settingModel : null, dominoWeight, Math.Round(encoderSeconds, 1), settings.Count, tried, SettingRows, source.Directory, Math.Round(encoderAccuracy, 4), Math.Round(modelAccuracy, 4), dims,
            Math.Round(settings.Average(s => s.SliceErrorRate), 4), Math.Round(settings.Average(s => s.OtherErrorRate), 4),
            summary.ToArray(), Math.Round(dominoAll - bestBaseline.MeanPrecisionAt10, 4), bestBaseline.Method,
            errorSlices, Math.Round(report.OverallAccuracy, 4), Math.Round(total.Elapsed.TotalSeconds, 1), results.ToArray());
        var path = Path.Combine(output, "metrics.json");
        File.WriteAllText(path, JsonSerializer.Serialize(metrics, JsonOptions) + Environment.NewLine);
        AnsiConsole.MarkupLine($"Wrote [blue]{Markup.Escape(path)}[/].");
        AnsiConsole.MarkupLine(Invariant($"Done in {total.Elapsed.TotalSeconds:F0} s."));
        return 0;
    }

    /// <summary>Domino on the 10-class MLP's test predictions; prints the slices, their statistics and descriptions.</summary>
    private static (ErrorSlice[] Slices, DominoReport Report) SliceTheEncoder(MLContext ml, Images test, int[] testRows, float[] emb, float[] probs, int dims, PoolView concepts, CancellationToken ct)
    {
        var names = FashionMnist.ClassNames.ToArray();
        var rows = testRows.Select(i => new ErrorRow
        {
            Embedding = emb.AsSpan(i * dims, dims).ToArray(),
            Class = names[test.Labels[i]],
            Score = probs.AsSpan(i * 10, 10).ToArray(),
        });
        var schema = SchemaDefinition.Create(typeof(ErrorRow));
        schema["Embedding"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, dims);
        schema["Score"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, 10);
        var raw = ml.Data.LoadFromEnumerable(rows, schema);
        var keys = ml.Data.LoadFromEnumerable(names.Select(n => new ClassName { Class = n }));
        var data = ml.Transforms.Conversion.MapValueToKey("Label", "Class", keyData: keys).Fit(raw).Transform(raw);

        // Ten classes would need 100 components for the confusion start; k-means starts (the reference's current default) work with 25.
        var slicer = ml.Hazy().Slicing.Domino(new DominoEstimator.Options
        {
            EmbeddingColumnName = "Embedding", NumberOfSlices = 5, NumberOfComponents = 25, Initialization = DominoInitialization.KMeans,
            Seed = 1, CancellationToken = ct,
        });
        var sliced = slicer.Fit(data);
        var report = sliced.TrainingReport;

        var table = new Table().Title(Invariant($"Slices of the 10-class classifier's errors on {testRows.Length:N0} test images (accuracy {report.OverallAccuracy:P1})"))
            .AddColumn("Slice").AddColumn(new TableColumn("Size").RightAligned()).AddColumn(new TableColumn("Acc. in").RightAligned())
            .AddColumn(new TableColumn("Acc. out").RightAligned()).AddColumn("Label").AddColumn("Predicted").AddColumn("Top phrases");

        var embedder = new PrototypeTextEmbedder(concepts);
        var vocabulary = File.Exists(WordList)
            ? File.ReadLines(WordList).Where(w => w.Length > 2 && w.All(char.IsAsciiLetterLower)).Concat(PrototypeTextEmbedder.ConceptWords)
            : PrototypeTextEmbedder.ConceptWords;
        var phrases = DominoDescriber.CandidatePhrases(vocabulary, ["a photo of a {0}."]);
        AnsiConsole.MarkupLine(Invariant($"Describe: {phrases.Count:N0} candidate phrases from {(File.Exists(WordList) ? WordList : "the class-name words (install wamerican for a full vocabulary)")}."));
        var result = new List<ErrorSlice>();
        foreach (var s in report.Slices)
        {
            var described = sliced.DescribeAsync(data, s.Slice, embedder, phrases, new DominoDescribeOptions { Top = 3 }, ct).GetAwaiter().GetResult();
            // The stand-in encoder maps words it does not know to zero, so only phrases with a positive score say something.
            var top = described.Where(d => d.Score > 0).Select(d => d.Phrase).ToArray();
            table.AddRow(Invariant($"{s.Slice}"), Invariant($"{s.Size}"), Invariant($"{s.AccuracyInside:P0}"), Invariant($"{s.AccuracyOutside:P1}"),
                Markup.Escape(Invariant($"{s.DominantLabel} ({s.DominantLabelShare:P0})")), Markup.Escape(Invariant($"{s.DominantPrediction} ({s.DominantPredictionShare:P0})")),
                Markup.Escape(top.Length == 0 ? "(no phrase points towards the slice)" : string.Join("; ", top)));
            result.Add(new ErrorSlice(s.Slice, s.Size, Math.Round(s.ExpectedSize, 1), Math.Round(s.Gap, 3), Math.Round(s.AccuracyInside, 4), Math.Round(s.AccuracyOutside, 4),
                s.DominantLabel, Math.Round(s.DominantLabelShare, 3), s.DominantPrediction, Math.Round(s.DominantPredictionShare, 3), top,
                s.TopExamples.Select(e => e.Row).ToArray()));
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine("[grey]Phrases come from a stand-in text encoder (class-mean embeddings for class-name words), since no cross-modal encoder is reachable here.[/]");
        return (result.ToArray(), report);
    }

    /// <summary>Where a setting's predictions come from (<c>--predictions</c>).</summary>
    private enum PredictionMode
    {
        /// <summary>Domino's synthesize_preds: Beta-distributed probabilities, more errors on the slice.</summary>
        Synthetic,

        /// <summary>One softmax regression for every setting; slice rows are corrupted at the setting's error rate.</summary>
        Trained,

        /// <summary>
        /// As dcbench: a model (a small Hazy CNN, or with --setting-model linear a softmax regression) trained per setting
        /// on rows drawn the way the setting draws its validation and test rows (the fine class rare, the attribute
        /// correlated with the target, the labels noisy), so its errors on the slice are its own.
        /// </summary>
        PerSetting,
    }

    /// <summary>The pools a setting draws from: validation, test, and the rows a per-setting model trains on.</summary>
    private sealed record SettingContext(MLContext Ml, PoolView Validation, PoolView Test, PoolView ModelPool, PredictionMode Mode, bool CnnSettingModel);

    /// <summary>A drawn split: pool rows, their labels for this setting, and which rows are in the slice.</summary>
    private sealed record Draw(int[] Rows, int[] Labels, bool[] Slice);

    /// <summary>
    /// 20 rare, 20 correlation and 20 noisy-label settings. Candidates of each type are generated in a fixed order and
    /// the first 20 whose model errs on the slice (<see cref="Setting.ModelErrsOnSlice"/>) are kept, from at most
    /// <see cref="MaxCandidatesPerType"/>; planted predictions keep the first 20.
    /// </summary>
    private static List<Setting> BuildSettings(SettingContext context, out Dictionary<string, int> candidatesTried)
    {
        var settings = new List<Setting>();
        candidatesTried = new Dictionary<string, int>();
        // Rare: α cycles through 5 %, 10 % and 2 % of the coarse class; the planted model's wrong class and error rate are drawn per candidate.
        double[] alphas = [0.05, 0.1, 0.02];
        candidatesTried["rare"] = Collect(settings, i =>
        {
            int fine = i % 10;
            double alpha = alphas[(i / 10) % alphas.Length];
            var rng = new Random(100 + i);
            int wrong = (Coarse[fine] + 1 + rng.Next(2)) % 3;
            double error = 0.5 + 0.4 * rng.NextDouble();
            return Rare(Invariant($"rare-{FashionMnist.ClassNames[fine]}-{alpha}"), context, fine, alpha, wrong, error, rng);
        });
        double[] correlations = [0.5, 0.6, 0.7, 0.8, 0.9];
        candidatesTried["correlation"] = Collect(settings, i =>
        {
            int group = i % 3;
            bool dark = (i / 3) % 2 == 0;
            double rho = correlations[i % 5];
            var rng = new Random(200 + i);
            double error = 0.5 + 0.4 * rng.NextDouble();
            return Correlation(Invariant($"correlation-{CoarseNames[group]}-{(dark ? "dark" : "large")}-{rho}"), context, group, dark, rho, error, rng);
        });
        double[] noise = [0.3, 0.5, 0.4];
        candidatesTried["noisy"] = Collect(settings, i =>
        {
            int fine = i % 10;
            double rho = noise[(i / 10) % noise.Length];
            var rng = new Random(300 + i);
            int wrong = (Coarse[fine] + 1 + rng.Next(2)) % 3;
            return Noisy(Invariant($"noisy-{FashionMnist.ClassNames[fine]}-{rho}"), context, fine, rho, wrong, rng);
        });
        return settings;
    }

    private const int MaxCandidatesPerType = 400;

    private static int Collect(List<Setting> settings, Func<int, Setting> candidate)
    {
        int kept = 0, i = 0;
        for (; i < MaxCandidatesPerType && kept < SettingsPerType; i++)
        {
            var s = candidate(i);
            if (!s.ModelErrsOnSlice)
                continue;
            settings.Add(s);
            kept++;
        }
        return i;
    }

    /// <summary>
    /// Draws the validation and test splits with <paramref name="draw"/>; with <see cref="PredictionMode.PerSetting"/> a
    /// softmax regression is first trained on a third draw from the model pool and predicts both splits; otherwise
    /// <paramref name="planted"/> makes the predictions of a split.
    /// </summary>
    private static Setting Make(string name, string type, SettingContext context, int classes, Func<PoolView, int, Draw> draw,
        Func<PoolView, Draw, float[]> planted)
    {
        ITransformer? model = null;
        if (context.Mode == PredictionMode.PerSetting)
        {
            var training = draw(context.ModelPool, ModelTrainingRows);
            var labelOf = training.Rows.Select((r, i) => (r, i)).ToDictionary(t => t.r, t => training.Labels[t.i]);
            var view = context.Ml.Data.Cache(View(context.Ml, context.ModelPool.Images.Pixels, Pixels, training.Rows, r => labelOf[r], classes));
            // --setting-model cnn: a small Hazy CNN, which (unlike a linear model) can learn a shortcut such as brightness.
            model = context.CnnSettingModel
                ? context.Ml.MulticlassClassification.Trainers.HazyCnn(new CnnTrainer.Options { Height = 28, Width = 28, NumberOfEpochs = 5, Seed = 1 }).Fit(view)
                : context.Ml.MulticlassClassification.Trainers.LbfgsMaximumEntropy().Fit(view);
        }
        (SliceDiscoveryData Data, bool[] Slice, double Inside, double Outside) Split(PoolView pool)
        {
            var d = draw(pool, SettingRows);
            var probs = model is not null
                ? Scores(model, View(context.Ml, pool.Images.Pixels, Pixels, d.Rows, _ => 0, classes), d.Rows.Length, classes)
                : planted(pool, d);
            return (pool.Data(d.Rows, d.Labels, probs, classes), d.Slice, ErrorRate(probs, d.Labels, classes, d.Slice, true), ErrorRate(probs, d.Labels, classes, d.Slice, false));
        }
        var (v, _, vInside, vOutside) = Split(context.Validation);
        var (t, s, inside, outside) = Split(context.Test);
        return new Setting(name, type, v, t, s, inside, outside, vInside, vOutside);
    }

    // Rare: fine class f makes up α of its coarse class; the planted model errs on each of its rows with probability e, always towards one wrong class.
    private static Setting Rare(string name, SettingContext context, int fine, double alpha, int wrong, double error, Random rng)
    {
        Draw Sample(PoolView pool, int n)
        {
            var others = Shuffled(pool.Rows.Where(r => pool.Fine(r) != fine), rng);
            var sliceRows = Shuffled(pool.Rows.Where(r => pool.Fine(r) == fine), rng);
            int groupShare = others.Take(n).Count(r => Coarse[pool.Fine(r)] == Coarse[fine]);
            int m = Math.Min(sliceRows.Length, Math.Max(1, (int)Math.Round(alpha * groupShare / (1 - alpha))));
            var rows = others.Take(n - m).Concat(sliceRows.Take(m)).ToArray();
            rng.Shuffle(rows);
            return new Draw(rows, rows.Select(r => Coarse[pool.Fine(r)]).ToArray(), rows.Select(r => pool.Fine(r) == fine).ToArray());
        }
        float[] Planted(PoolView pool, Draw d)
        {
            if (context.Mode == PredictionMode.Synthetic)
                return Synthetic(d.Labels, d.Slice, 3, 1 - error, wrong, rng);
            var probs = d.Rows.SelectMany(pool.Probabilities).ToArray();
            for (int i = 0; i < d.Rows.Length; i++)
                if (d.Slice[i] && rng.NextDouble() < error)
                    Corrupt(probs, i, 3, wrong, pool.ErrorConfidence(rng));
            return probs;
        }
        return Make(name, "rare", context, 3, Sample, Planted);
    }

    // Correlation: the target (coarse class = G) is correlated with a visual attribute at ρ; the planted model errs on the
    // targets without the attribute (the minority group a shortcut fails on) with probability e.
    private static Setting Correlation(string name, SettingContext context, int group, bool dark, double rho, double error, Random rng)
    {
        Draw Sample(PoolView pool, int n)
        {
            var target = pool.Rows.Select(r => Coarse[pool.Fine(r)] == group).ToArray();
            var attribute = pool.Rows.Select(r => dark ? pool.IsDark(r) : pool.IsLarge(r)).ToArray();
            // The attribute is made as common as the target, so that every correlation up to 1 is reachable.
            double share = target.Count(t => t) / (double)target.Length;
            var chosen = InducedCorrelation.Sample(target, attribute, n, rho, rng, share, share);
            var rows = chosen.Select(i => pool.Rows[i]).ToArray();
            rng.Shuffle(rows);
            return new Draw(rows, rows.Select(r => Coarse[pool.Fine(r)] == group ? 1 : 0).ToArray(),
                rows.Select(r => Coarse[pool.Fine(r)] == group && !(dark ? pool.IsDark(r) : pool.IsLarge(r))).ToArray());
        }
        float[] Planted(PoolView pool, Draw d)
        {
            if (context.Mode == PredictionMode.Synthetic)
                return Synthetic(d.Labels, d.Slice, 2, 1 - error, 0, rng);
            var probs = d.Rows.SelectMany(r =>
            {
                var p = pool.Probabilities(r);
                return new[] { 1 - p[group], p[group] };
            }).ToArray();
            for (int i = 0; i < d.Rows.Length; i++)
                if (d.Slice[i] && rng.NextDouble() < error)
                    Corrupt(probs, i, 2, 0, pool.ErrorConfidence(rng));
            return probs;
        }
        return Make(name, "correlation", context, 2, Sample, Planted);
    }

    // Noisy labels: each row of fine class f carries a wrong coarse label with probability ρ; the planted model is unchanged
    // (synthetic: it predicts the clean label as well on the slice as elsewhere), so the slice's errors are the flipped labels.
    // A per-setting model trains on labels flipped the same way.
    private static Setting Noisy(string name, SettingContext context, int fine, double rho, int wrong, Random rng)
    {
        Draw Sample(PoolView pool, int n)
        {
            var rows = Shuffled(pool.Rows, rng).Take(n).ToArray();
            var slice = rows.Select(r => pool.Fine(r) == fine).ToArray();
            return new Draw(rows, rows.Select((r, i) => slice[i] && rng.NextDouble() < rho ? wrong : Coarse[pool.Fine(r)]).ToArray(), slice);
        }
        float[] Planted(PoolView pool, Draw d) => context.Mode == PredictionMode.Synthetic
            ? Synthetic(d.Rows.Select(r => Coarse[pool.Fine(r)]).ToArray(), new bool[d.Rows.Length], 3, Sensitivity, -1, rng)
            : d.Rows.SelectMany(pool.Probabilities).ToArray();
        return Make(name, "noisy", context, 3, Sample, Planted);
    }

    /// <summary>Domino's synthetic model outside the slice: the label's probability is drawn from Beta(0.8, 0.2) (error ≈ 17 %).</summary>
    private const double Sensitivity = 0.8;

    /// <summary>
    /// Domino's synthetic predictions (<c>synthesize_preds</c> in the reference's evaluation utilities, beside
    /// <c>induce_correlation</c>): the probability the model gives row i's label is drawn from Beta(s, 1 − s), s = 0.8
    /// outside the slice and <paramref name="sliceSensitivity"/> inside, so the model has realistic errors everywhere and
    /// more on the slice. The reference is binary; with more classes the rest of the mass goes to one other class: the
    /// setting's <paramref name="sliceWrong"/> class on the slice (a systematic error), a random other class elsewhere.
    /// </summary>
    private static float[] Synthetic(int[] labels, bool[] slice, int c, double sliceSensitivity, int sliceWrong, Random rng)
    {
        var probs = new float[labels.Length * c];
        for (int i = 0; i < labels.Length; i++)
        {
            double s = slice[i] ? sliceSensitivity : Sensitivity;
            double q = Beta(s, 1 - s, rng);
            int other = slice[i] && sliceWrong >= 0 && sliceWrong != labels[i] ? sliceWrong : (labels[i] + 1 + rng.Next(c - 1)) % c;
            probs[i * c + labels[i]] = (float)q;
            probs[i * c + other] = (float)(1 - q);
        }
        return probs;
    }

    private static double Beta(double a, double b, Random rng)
    {
        double x = Gamma(a, rng), y = Gamma(b, rng);
        return x + y > 0 ? x / (x + y) : rng.NextDouble() < a / (a + b) ? 1 : 0;
    }

    // Marsaglia–Tsang; shapes below 1 use Gamma(a) = Gamma(a + 1) · U^(1/a).
    private static double Gamma(double a, Random rng)
    {
        if (a < 1)
            return Gamma(a + 1, rng) * Math.Pow(1 - rng.NextDouble(), 1 / a);
        double d = a - 1.0 / 3, c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double x = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            double v = 1 + c * x;
            if (v <= 0)
                continue;
            v = v * v * v;
            double u = 1 - rng.NextDouble();
            if (Math.Log(u) < 0.5 * x * x + d - d * v + d * Math.Log(v))
                return d * v;
        }
    }

    // The prediction of row i becomes class `wrong` with probability q; the rest keeps the other classes' proportions.
    private static void Corrupt(float[] probs, int i, int c, int wrong, double q)
    {
        var row = probs.AsSpan(i * c, c);
        double rest = 0;
        for (int j = 0; j < c; j++)
            if (j != wrong)
                rest += row[j];
        for (int j = 0; j < c; j++)
            row[j] = j == wrong ? (float)q : rest > 0 ? (float)((1 - q) * row[j] / rest) : (float)((1 - q) / (c - 1));
    }

    private static double ErrorRate(float[] probs, int[] labels, int c, bool[] slice, bool inside)
    {
        int n = 0, wrong = 0;
        for (int i = 0; i < labels.Length; i++)
        {
            if (slice[i] != inside)
                continue;
            n++;
            wrong += ArgMax(probs.AsSpan(i * c, c)) != labels[i] ? 1 : 0;
        }
        return n == 0 ? 0 : (double)wrong / n;
    }

    /// <summary>A pool of images with their embeddings and the sliced model's coarse probabilities.</summary>
    private sealed class PoolView
    {
        private readonly Images _images;
        private readonly float[] _embeddings;
        private readonly int _dims;
        private readonly Dictionary<int, float[]> _probabilities;
        private readonly double[] _errorConfidences;
        private readonly double[] _intensityMedian = new double[10];
        private readonly double[] _areaMedian = new double[10];

        public PoolView(Images images, int[] rows, float[] embeddings, int dims, float[] coarseProbabilities)
        {
            _images = images;
            Rows = rows;
            _embeddings = embeddings;
            _dims = dims;
            _probabilities = rows.Select((r, i) => (r, i)).ToDictionary(t => t.r, t => coarseProbabilities.AsSpan(t.i * 3, 3).ToArray());
            // How confident the model is when it is wrong: corrupted rows draw their confidence from here.
            _errorConfidences = rows.Select(r => _probabilities[r]).Where((p, i) => ArgMax(p) != Coarse[images.Labels[rows[i]]]).Select(p => (double)p.Max()).ToArray();
            if (_errorConfidences.Length == 0)
                _errorConfidences = [0.9];
            for (int c = 0; c < 10; c++)
            {
                var members = rows.Where(r => images.Labels[r] == c).ToArray();
                _intensityMedian[c] = Median(members.Select(r => images.Intensity[r]));
                _areaMedian[c] = Median(members.Select(r => images.Area[r]));
            }
        }

        public int[] Rows { get; }

        public Images Images => _images;

        public int Fine(int row) => _images.Labels[row];

        public float[] Probabilities(int row) => _probabilities[row];

        public bool IsDark(int row) => _images.Intensity[row] < _intensityMedian[Fine(row)];

        public bool IsLarge(int row) => _images.Area[row] > _areaMedian[Fine(row)];

        public double ErrorConfidence(Random rng) => _errorConfidences[rng.Next(_errorConfidences.Length)];

        public float[] Embedding(int row) => _embeddings.AsSpan(row * _dims, _dims).ToArray();

        public SliceDiscoveryData Data(int[] rows, int[] labels, float[] probs, int classes) =>
            new(rows.SelectMany(r => _embeddings.AsSpan(r * _dims, _dims).ToArray()).ToArray(), _dims, labels, probs, classes);

        /// <summary>The mean embedding of each fine class over the pool.</summary>
        public float[][] ClassMeans()
        {
            var means = new float[10][];
            for (int c = 0; c < 10; c++)
            {
                var members = Rows.Where(r => Fine(r) == c).ToArray();
                means[c] = new float[_dims];
                foreach (var r in members)
                    for (int j = 0; j < _dims; j++)
                        means[c][j] += _embeddings[r * _dims + j] / members.Length;
            }
            return means;
        }

        private static double Median(IEnumerable<double> values)
        {
            var sorted = values.OrderBy(v => v).ToArray();
            return sorted.Length == 0 ? 0 : sorted[sorted.Length / 2];
        }
    }

    /// <summary>
    /// A stand-in for a cross-modal text encoder: a phrase's embedding is the mean of the class-mean image embeddings of
    /// the Fashion-MNIST class words it contains (zero when it has none).
    /// </summary>
    private sealed class PrototypeTextEmbedder : IEmbeddingGenerator<string, Embedding<float>>
    {
        public static readonly string[] ConceptWords = ["tshirt", "top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"];
        private static readonly int[] ConceptClasses = [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        private readonly float[][] _classMeans;

        public PrototypeTextEmbedder(PoolView pool) => _classMeans = pool.ClassMeans();

        public Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null, CancellationToken cancellationToken = default)
        {
            int d = _classMeans[0].Length;
            var result = new GeneratedEmbeddings<Embedding<float>>();
            foreach (var phrase in values)
            {
                var v = new float[d];
                int hits = 0;
                foreach (var token in phrase.ToLowerInvariant().Replace("-", "", StringComparison.Ordinal).Split([' ', '.', ','], StringSplitOptions.RemoveEmptyEntries))
                {
                    int k = Array.IndexOf(ConceptWords, token.EndsWith('s') ? token[..^1] : token);
                    if (k < 0)
                        continue;
                    hits++;
                    for (int j = 0; j < d; j++)
                        v[j] += _classMeans[ConceptClasses[k]][j];
                }
                if (hits > 1)
                    for (int j = 0; j < d; j++)
                        v[j] /= hits;
                result.Add(new Embedding<float>(v));
            }
            return Task.FromResult(result);
        }

        public object? GetService(Type serviceType, object? serviceKey = null) => null;

        public void Dispose()
        {
        }
    }

    private static Images ReadImages(IDataView data)
    {
        var labels = new List<int>();
        var pixels = new List<float>();
        var intensity = new List<double>();
        var area = new List<double>();
        using var cursor = data.GetRowCursor(data.Schema);
        var getLabel = cursor.GetGetter<uint>(data.Schema["Label"]);
        var getFeatures = cursor.GetGetter<VBuffer<float>>(data.Schema["Features"]);
        uint label = 0;
        VBuffer<float> features = default;
        while (cursor.MoveNext())
        {
            getLabel(ref label);
            getFeatures(ref features);
            labels.Add((int)label - 1);
            double sum = 0;
            int on = 0;
            foreach (var v in features.DenseValues())
            {
                pixels.Add(v);
                if (v > 0.1f)
                {
                    sum += v;
                    on++;
                }
            }
            intensity.Add(on == 0 ? 0 : sum / on);
            area.Add(on);
        }
        return new Images(labels.ToArray(), pixels.ToArray(), intensity.ToArray(), area.ToArray());
    }

    /// <summary>
    /// The penultimate activations (every layer but the head) and the class probabilities of every image. With
    /// <paramref name="pool"/> (a CNN), the last conv block's [B, C, H, W] maps are averaged over H and W instead of flattened.
    /// </summary>
    private static (float[] Embeddings, float[] Probabilities) Embed(nn.Module<Tensor, Tensor> network, Images images, bool pool)
    {
        var sequential = network.named_children().Select(c => c.module).OfType<TorchSharp.Modules.Sequential>().Single();
        var layers = sequential.named_children().ToArray();
        var body = layers.Where(l => l.name != "head").Select(l => (nn.Module<Tensor, Tensor>)l.module).ToArray();
        var features = pool ? layers.TakeWhile(l => l.name != "flatten").Select(l => (nn.Module<Tensor, Tensor>)l.module).ToArray() : body;
        var head = (nn.Module<Tensor, Tensor>)layers.Single(l => l.name == "head").module;
        network.eval();
        var embeddings = new List<float>();
        var probabilities = new List<float>();
        using (no_grad())
        {
            for (int start = 0; start < images.Count; start += 1024)
            {
                using var scope = NewDisposeScope();
                int b = Math.Min(1024, images.Count - start);
                var input = tensor(images.Pixels.AsSpan(start * Pixels, b * Pixels).ToArray(), new long[] { b, Pixels });
                var x = input;
                foreach (var layer in body)
                    x = layer.forward(x);
                var z = x;
                if (pool)
                {
                    z = input;
                    foreach (var layer in features)
                        z = layer.forward(z);
                    z = z.mean(new long[] { 2, 3 });
                }
                embeddings.AddRange(z.contiguous().data<float>().ToArray());
                probabilities.AddRange(nn.functional.softmax(head.forward(x), 1).data<float>().ToArray());
            }
        }
        return (embeddings.ToArray(), probabilities.ToArray());
    }

    /// <summary>
    /// Rows of a row-major value array (pixels or embeddings, <paramref name="width"/> per row) as a Features vector and
    /// a key Label with <paramref name="classes"/> values; <paramref name="label"/> maps a pool row to its label.
    /// </summary>
    private static IDataView View(MLContext ml, float[] values, int width, int[] rows, Func<int, int> label, int classes)
    {
        var schema = SchemaDefinition.Create(typeof(ImageRow));
        schema["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, width);
        schema["Label"].ColumnType = new KeyDataViewType(typeof(uint), classes);
        // LoadFromEnumerable reads a key field of a class as 0-based.
        return ml.Data.LoadFromEnumerable(rows.Select(r => new ImageRow { Features = values.AsSpan(r * width, width).ToArray(), Label = (uint)label(r) }), schema);
    }

    private static IDataView ImagesView(MLContext ml, Images images, int[] rows, bool coarse = false) =>
        View(ml, images.Pixels, Pixels, rows, r => coarse ? Coarse[images.Labels[r]] : images.Labels[r], coarse ? 3 : 10);

    /// <summary>The model's Score vector for each of the view's rows, row-major.</summary>
    private static float[] Scores(ITransformer model, IDataView view, int rows, int classes)
    {
        var probs = model.Transform(view).GetColumn<VBuffer<float>>("Score").SelectMany(v => v.DenseValues()).ToArray();
        if (probs.Length != rows * classes)
            throw new InvalidOperationException($"The model scored {probs.Length} values for {rows} rows × {classes} classes.");
        return probs;
    }

    private static double Accuracy(float[] probs, int[] labels, int c) =>
        Enumerable.Range(0, labels.Length).Average(i => ArgMax(probs.AsSpan(i * c, c)) == labels[i] ? 1.0 : 0.0);

    private static double Accuracy(float[] probs, int[] labels, int c, int[] rows) =>
        rows.Average(i => ArgMax(probs.AsSpan(i * c, c)) == labels[i] ? 1.0 : 0.0);

    // Rows of a compact array (one block of `width` values per listed row) placed at their indices in an array of `count` blocks.
    private static float[] Scatter(float[] compact, int[] rows, int count, int width)
    {
        var full = new float[(long)count * width];
        for (int i = 0; i < rows.Length; i++)
            Array.Copy(compact, (long)i * width, full, (long)rows[i] * width, width);
        return full;
    }

    // ResNet18 features of the given rows, read from --embedding-cache DIR when an earlier run left them there.
    private static float[] CachedEmbeddings(SampleContext context, string split, Images images, int[] rows, ResNet18Embedder resnet, CancellationToken ct)
    {
        string? dir = context.Text("embedding-cache");
        string? path = dir is null ? null : Path.Combine(dir, Invariant($"resnet18-{split}-{rows.Length}-{rows[0]}.bin"));
        long expected = (long)rows.Length * ResNet18Embedder.Dimensions;
        if (path is not null && File.Exists(path) && new FileInfo(path).Length == expected * sizeof(float))
        {
            var cached = new float[expected];
            using var stream = File.OpenRead(path);
            stream.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(cached.AsSpan()));
            AnsiConsole.MarkupLine($"ResNet18 features of {rows.Length:N0} {split} images read from [grey]{Markup.Escape(path)}[/].");
            return cached;
        }
        var features = resnet.Embed(images.Pixels, FashionMnist.ImageSize, rows, ct);
        if (path is not null)
        {
            Directory.CreateDirectory(dir!);
            File.WriteAllBytes(path, System.Runtime.InteropServices.MemoryMarshal.AsBytes(features.AsSpan()).ToArray());
        }
        return features;
    }

    private static int ArgMax(ReadOnlySpan<float> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++)
            if (v[i] > v[best])
                best = i;
        return best;
    }

    private static int[] Shuffled(IEnumerable<int> rows, Random rng)
    {
        var a = rows.ToArray();
        rng.Shuffle(a);
        return a;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    private sealed class ImageRow
    {
        public float[] Features = [];
        public uint Label;
    }

    private sealed class ErrorRow
    {
        public float[] Embedding = [];
        public string Class = "";
        public float[] Score = [];
    }

    private sealed class ClassName
    {
        public string Class = "";
    }

    private sealed record SettingResult(string Setting, string Type, string Method, double AveragePrecision, double PrecisionAt10, double PrecisionAt25,
        int MatchedSlice, bool Complement, double FitSeconds, int SliceRows, double SliceErrorRate, double OtherErrorRate);

    private sealed record MethodSummary(string Method, string SliceType, int Settings, double MeanPrecisionAt10, double MeanAveragePrecision,
        double MeanPrecisionAt25, double MeanFitSeconds);

    private sealed record ErrorSlice(int Slice, int Size, double ExpectedSize, double Gap, double AccuracyInside, double AccuracyOutside,
        string DominantLabel, double DominantLabelShare, string DominantPrediction, double DominantPredictionShare, string[] TopPhrases, int[] TopRows);

    private sealed record DominoMetrics(string Encoder, string Predictions, string? SettingModel, double DominoWeight, double EncoderSeconds, int Settings, Dictionary<string, int> CandidatesTried, int RowsPerSplit, string DataDirectory, double EncoderTestAccuracy, double SlicedModelTestAccuracy,
        int EmbeddingSize, double MeanSliceErrorRate, double MeanOtherErrorRate, MethodSummary[] Summary, double DominoMinusBestBaselinePrecisionAt10,
        string BestBaseline, ErrorSlice[] EncoderErrorSlices, double EncoderAccuracyInReport, double TotalSeconds, SettingResult[] PerSetting);
}

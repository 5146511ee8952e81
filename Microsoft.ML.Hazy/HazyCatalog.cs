using Microsoft.ML.Hazy;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Contrastive;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Embedding;
using Microsoft.ML.Hazy.Heads;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Training;
using MlpDefaults = Microsoft.ML.Hazy.Mlp.MlpTrainer.Options.Defaults;
using CnnDefaults = Microsoft.ML.Hazy.Cnn.CnnTrainer.Options.Defaults;
using SequenceDefaults = Microsoft.ML.Hazy.Sequence.SequenceTrainer.Options.Defaults;
using FineTuneDefaults = Microsoft.ML.Hazy.Mlp.MonarchFineTuneTrainer.Options.Defaults;

namespace Microsoft.ML
{
    /// <summary>Entry point to Hazy components: <c>mlContext.Hazy()</c>.</summary>
    public static class HazyMLContextExtensions
    {
        /// <summary>The Hazy catalog of this context; its components use the context's seed, log and GPU settings.</summary>
        public static HazyCatalog Hazy(this MLContext mlContext) => new(mlContext);
    }

    /// <summary>
    /// Hazy trainers as extensions of ML.NET's trainer catalogs. Each method is the same trainer as the
    /// <see cref="HazyCatalog.TaskTrainers"/> method of the same task, with the defaults of the trainer's <c>Options.Defaults</c>.
    /// </summary>
    public static class HazyTrainersCatalogExtensions
    {
        /// <summary>A multilayer-perceptron multiclass classifier trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="labelColumnName">The label column: a key type.</param>
        /// <param name="featureColumnName">The feature column: a known-size vector of Single.</param>
        /// <param name="hiddenLayers">Widths of the hidden layers; null takes <see cref="MlpTrainer.Options.Defaults.HiddenLayers"/>.</param>
        /// <param name="numberOfEpochs">Passes over the data.</param>
        /// <param name="learningRate">Peak learning rate.</param>
        /// <param name="batchSize">Rows per step.</param>
        public static MlpTrainer HazyMlp(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int[]? hiddenLayers = null,
            int numberOfEpochs = MlpDefaults.NumberOfEpochs, double learningRate = MlpDefaults.LearningRate, int batchSize = MlpDefaults.BatchSize) =>
            Tasks(catalog, PredictionKind.MulticlassClassification).Mlp(labelColumnName, featureColumnName, hiddenLayers, numberOfEpochs, learningRate, batchSize);

        /// <summary>A multilayer-perceptron multiclass classifier with all options.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static MlpTrainer HazyMlp(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, MlpTrainer.Options options) => Tasks(catalog, PredictionKind.MulticlassClassification).Mlp(options);

        /// <summary>A convolutional multiclass classifier for image-shaped feature vectors, trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="labelColumnName">The label column: a key type.</param>
        /// <param name="featureColumnName">The feature column: a vector of <paramref name="channels"/>·<paramref name="height"/>·<paramref name="width"/> Single, channel after channel, each row by row.</param>
        /// <param name="channels">Channels of the image.</param>
        /// <param name="height">Height of the image in pixels; required.</param>
        /// <param name="width">Width of the image in pixels; required.</param>
        /// <param name="numberOfEpochs">Passes over the data.</param>
        /// <param name="learningRate">Peak learning rate.</param>
        /// <param name="batchSize">Rows per step.</param>
        public static CnnTrainer HazyCnn(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int channels = CnnDefaults.Channels, int height = 0, int width = 0,
            int numberOfEpochs = CnnDefaults.NumberOfEpochs, double learningRate = CnnDefaults.LearningRate, int batchSize = CnnDefaults.BatchSize) =>
            Tasks(catalog, PredictionKind.MulticlassClassification).Cnn(labelColumnName, featureColumnName, channels, height, width, numberOfEpochs, learningRate, batchSize);

        /// <summary>A convolutional multiclass classifier with all options.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="CnnTrainer.Options.Height"/> and <see cref="CnnTrainer.Options.Width"/> must be set.</param>
        public static CnnTrainer HazyCnn(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, CnnTrainer.Options options) => Tasks(catalog, PredictionKind.MulticlassClassification).Cnn(options);

        /// <summary>An S4D sequence multiclass classifier (diagonal state-space layers) trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="labelColumnName">The label column: a key type.</param>
        /// <param name="featureColumnName">The sequence column: a vector of Single, time-major steps of <paramref name="channels"/> values (variable size for sequences of different lengths).</param>
        /// <param name="channels">Values per time step.</param>
        /// <param name="modelDimension">The model width H; 0 sizes it to the data (see <see cref="SequenceTrainer.Options"/>).</param>
        /// <param name="numberOfLayers">The number of S4D blocks; 0 sizes it to the data.</param>
        /// <param name="numberOfEpochs">Passes over the data; 0 trains the fewest epochs that take 300 optimizer steps.</param>
        /// <param name="learningRate">Peak learning rate (the state-space parameters keep their own, 1e-3).</param>
        /// <param name="batchSize">Rows per step; 0 sizes it to the data (16 below 2,000 rows).</param>
        /// <param name="maximumLength">For series of different lengths, the most time steps a row may have when the model scores it; 0 takes the longest training row.</param>
        public static SequenceTrainer HazyS4D(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int channels = SequenceDefaults.Channels,
            int modelDimension = SequenceDefaults.ModelDimension, int numberOfLayers = SequenceDefaults.NumberOfLayers,
            int numberOfEpochs = SequenceDefaults.NumberOfEpochs, double learningRate = SequenceDefaults.LearningRate, int batchSize = SequenceDefaults.BatchSize, int maximumLength = 0) =>
            Tasks(catalog, PredictionKind.MulticlassClassification).S4D(labelColumnName, featureColumnName, channels, modelDimension, numberOfLayers, numberOfEpochs, learningRate, batchSize, maximumLength);

        /// <summary>An S4D sequence multiclass classifier with all options.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="SequenceTrainer.Options.Backbone"/> must be <see cref="SequenceBackbone.S4D"/>.</param>
        public static SequenceTrainer HazyS4D(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, SequenceTrainer.Options options) => Tasks(catalog, PredictionKind.MulticlassClassification).S4D(options);

        /// <summary>A sequence multiclass classifier with the backbone chosen by <see cref="SequenceTrainer.Options.Backbone"/>.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static SequenceTrainer HazySequence(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, SequenceTrainer.Options options) => Tasks(catalog, PredictionKind.MulticlassClassification).Sequence(options);

        /// <summary>A multilayer-perceptron binary classifier trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="labelColumnName">The label column: Boolean.</param>
        /// <param name="featureColumnName">The feature column: a known-size vector of Single.</param>
        /// <param name="hiddenLayers">Widths of the hidden layers; null takes <see cref="MlpTrainer.Options.Defaults.HiddenLayers"/>.</param>
        /// <param name="numberOfEpochs">Passes over the data.</param>
        /// <param name="learningRate">Peak learning rate.</param>
        /// <param name="batchSize">Rows per step.</param>
        public static MlpTrainer HazyMlp(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int[]? hiddenLayers = null,
            int numberOfEpochs = MlpDefaults.NumberOfEpochs, double learningRate = MlpDefaults.LearningRate, int batchSize = MlpDefaults.BatchSize) =>
            Tasks(catalog, PredictionKind.BinaryClassification).Mlp(labelColumnName, featureColumnName, hiddenLayers, numberOfEpochs, learningRate, batchSize);

        /// <summary>A multilayer-perceptron binary classifier with all options.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static MlpTrainer HazyMlp(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, MlpTrainer.Options options) => Tasks(catalog, PredictionKind.BinaryClassification).Mlp(options);

        /// <summary>A convolutional binary classifier for image-shaped feature vectors, trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="labelColumnName">The label column: Boolean.</param>
        /// <param name="featureColumnName">The feature column: a vector of <paramref name="channels"/>·<paramref name="height"/>·<paramref name="width"/> Single, channel after channel, each row by row.</param>
        /// <param name="channels">Channels of the image.</param>
        /// <param name="height">Height of the image in pixels; required.</param>
        /// <param name="width">Width of the image in pixels; required.</param>
        /// <param name="numberOfEpochs">Passes over the data.</param>
        /// <param name="learningRate">Peak learning rate.</param>
        /// <param name="batchSize">Rows per step.</param>
        public static CnnTrainer HazyCnn(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int channels = CnnDefaults.Channels, int height = 0, int width = 0,
            int numberOfEpochs = CnnDefaults.NumberOfEpochs, double learningRate = CnnDefaults.LearningRate, int batchSize = CnnDefaults.BatchSize) =>
            Tasks(catalog, PredictionKind.BinaryClassification).Cnn(labelColumnName, featureColumnName, channels, height, width, numberOfEpochs, learningRate, batchSize);

        /// <summary>A convolutional binary classifier with all options.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="CnnTrainer.Options.Height"/> and <see cref="CnnTrainer.Options.Width"/> must be set.</param>
        public static CnnTrainer HazyCnn(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, CnnTrainer.Options options) => Tasks(catalog, PredictionKind.BinaryClassification).Cnn(options);

        /// <summary>An S4D sequence binary classifier (diagonal state-space layers) trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="labelColumnName">The label column: Boolean.</param>
        /// <param name="featureColumnName">The sequence column: a vector of Single, time-major steps of <paramref name="channels"/> values (variable size for sequences of different lengths).</param>
        /// <param name="channels">Values per time step.</param>
        /// <param name="modelDimension">The model width H; 0 sizes it to the data (see <see cref="SequenceTrainer.Options"/>).</param>
        /// <param name="numberOfLayers">The number of S4D blocks; 0 sizes it to the data.</param>
        /// <param name="numberOfEpochs">Passes over the data; 0 trains the fewest epochs that take 300 optimizer steps.</param>
        /// <param name="learningRate">Peak learning rate (the state-space parameters keep their own, 1e-3).</param>
        /// <param name="batchSize">Rows per step; 0 sizes it to the data (16 below 2,000 rows).</param>
        /// <param name="maximumLength">For series of different lengths, the most time steps a row may have when the model scores it; 0 takes the longest training row.</param>
        public static SequenceTrainer HazyS4D(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int channels = SequenceDefaults.Channels,
            int modelDimension = SequenceDefaults.ModelDimension, int numberOfLayers = SequenceDefaults.NumberOfLayers,
            int numberOfEpochs = SequenceDefaults.NumberOfEpochs, double learningRate = SequenceDefaults.LearningRate, int batchSize = SequenceDefaults.BatchSize, int maximumLength = 0) =>
            Tasks(catalog, PredictionKind.BinaryClassification).S4D(labelColumnName, featureColumnName, channels, modelDimension, numberOfLayers, numberOfEpochs, learningRate, batchSize, maximumLength);

        /// <summary>An S4D sequence binary classifier with all options.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="SequenceTrainer.Options.Backbone"/> must be <see cref="SequenceBackbone.S4D"/>.</param>
        public static SequenceTrainer HazyS4D(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, SequenceTrainer.Options options) => Tasks(catalog, PredictionKind.BinaryClassification).S4D(options);

        /// <summary>A sequence binary classifier with the backbone chosen by <see cref="SequenceTrainer.Options.Backbone"/>.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static SequenceTrainer HazySequence(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, SequenceTrainer.Options options) => Tasks(catalog, PredictionKind.BinaryClassification).Sequence(options);

        /// <summary>A multilayer-perceptron regressor trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="labelColumnName">The label column: Single.</param>
        /// <param name="featureColumnName">The feature column: a known-size vector of Single.</param>
        /// <param name="hiddenLayers">Widths of the hidden layers; null takes <see cref="MlpTrainer.Options.Defaults.HiddenLayers"/>.</param>
        /// <param name="numberOfEpochs">Passes over the data.</param>
        /// <param name="learningRate">Peak learning rate.</param>
        /// <param name="batchSize">Rows per step.</param>
        public static MlpTrainer HazyMlp(this RegressionCatalog.RegressionTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int[]? hiddenLayers = null,
            int numberOfEpochs = MlpDefaults.NumberOfEpochs, double learningRate = MlpDefaults.LearningRate, int batchSize = MlpDefaults.BatchSize) =>
            Tasks(catalog, PredictionKind.Regression).Mlp(labelColumnName, featureColumnName, hiddenLayers, numberOfEpochs, learningRate, batchSize);

        /// <summary>A multilayer-perceptron regressor with all options.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static MlpTrainer HazyMlp(this RegressionCatalog.RegressionTrainers catalog, MlpTrainer.Options options) => Tasks(catalog, PredictionKind.Regression).Mlp(options);

        /// <summary>A convolutional regressor for image-shaped feature vectors, trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="labelColumnName">The label column: Single.</param>
        /// <param name="featureColumnName">The feature column: a vector of <paramref name="channels"/>·<paramref name="height"/>·<paramref name="width"/> Single, channel after channel, each row by row.</param>
        /// <param name="channels">Channels of the image.</param>
        /// <param name="height">Height of the image in pixels; required.</param>
        /// <param name="width">Width of the image in pixels; required.</param>
        /// <param name="numberOfEpochs">Passes over the data.</param>
        /// <param name="learningRate">Peak learning rate.</param>
        /// <param name="batchSize">Rows per step.</param>
        public static CnnTrainer HazyCnn(this RegressionCatalog.RegressionTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int channels = CnnDefaults.Channels, int height = 0, int width = 0,
            int numberOfEpochs = CnnDefaults.NumberOfEpochs, double learningRate = CnnDefaults.LearningRate, int batchSize = CnnDefaults.BatchSize) =>
            Tasks(catalog, PredictionKind.Regression).Cnn(labelColumnName, featureColumnName, channels, height, width, numberOfEpochs, learningRate, batchSize);

        /// <summary>A convolutional regressor with all options.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="CnnTrainer.Options.Height"/> and <see cref="CnnTrainer.Options.Width"/> must be set.</param>
        public static CnnTrainer HazyCnn(this RegressionCatalog.RegressionTrainers catalog, CnnTrainer.Options options) => Tasks(catalog, PredictionKind.Regression).Cnn(options);

        /// <summary>An S4D sequence regressor (diagonal state-space layers) trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="labelColumnName">The label column: Single.</param>
        /// <param name="featureColumnName">The sequence column: a vector of Single, time-major steps of <paramref name="channels"/> values (variable size for sequences of different lengths).</param>
        /// <param name="channels">Values per time step.</param>
        /// <param name="modelDimension">The model width H; 0 sizes it to the data (see <see cref="SequenceTrainer.Options"/>).</param>
        /// <param name="numberOfLayers">The number of S4D blocks; 0 sizes it to the data.</param>
        /// <param name="numberOfEpochs">Passes over the data; 0 trains the fewest epochs that take 300 optimizer steps.</param>
        /// <param name="learningRate">Peak learning rate (the state-space parameters keep their own, 1e-3).</param>
        /// <param name="batchSize">Rows per step; 0 sizes it to the data (16 below 2,000 rows).</param>
        /// <param name="maximumLength">For series of different lengths, the most time steps a row may have when the model scores it; 0 takes the longest training row.</param>
        public static SequenceTrainer HazyS4D(this RegressionCatalog.RegressionTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int channels = SequenceDefaults.Channels,
            int modelDimension = SequenceDefaults.ModelDimension, int numberOfLayers = SequenceDefaults.NumberOfLayers,
            int numberOfEpochs = SequenceDefaults.NumberOfEpochs, double learningRate = SequenceDefaults.LearningRate, int batchSize = SequenceDefaults.BatchSize, int maximumLength = 0) =>
            Tasks(catalog, PredictionKind.Regression).S4D(labelColumnName, featureColumnName, channels, modelDimension, numberOfLayers, numberOfEpochs, learningRate, batchSize, maximumLength);

        /// <summary>An S4D sequence regressor with all options.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="SequenceTrainer.Options.Backbone"/> must be <see cref="SequenceBackbone.S4D"/>.</param>
        public static SequenceTrainer HazyS4D(this RegressionCatalog.RegressionTrainers catalog, SequenceTrainer.Options options) => Tasks(catalog, PredictionKind.Regression).S4D(options);

        /// <summary>A sequence regressor with the backbone chosen by <see cref="SequenceTrainer.Options.Backbone"/>.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static SequenceTrainer HazySequence(this RegressionCatalog.RegressionTrainers catalog, SequenceTrainer.Options options) => Tasks(catalog, PredictionKind.Regression).Sequence(options);

        /// <summary>The Hazy trainers of one task, on the environment behind an ML.NET trainer catalog.</summary>
        private static HazyCatalog.TaskTrainers Tasks(object catalog, PredictionKind kind) => new(HazyEnvironment.From(catalog), kind);
    }

    /// <summary>Hazy transforms as extensions of ML.NET's transforms catalog (<c>mlContext.Transforms</c>).</summary>
    public static class HazyTransformsCatalogExtensions
    {
        /// <summary>
        /// A MiniRocket featurizer of a time-series column: 84 dilated kernels of length 9 and the proportion of positive values
        /// of their convolutions, to feed a stock linear trainer. See <see cref="Hazy.Sequence.MiniRocket.MiniRocketEstimator"/>.
        /// </summary>
        /// <param name="catalog">The transforms catalog.</param>
        /// <param name="outputColumnName">The feature column written: a known-size vector of Single.</param>
        /// <param name="inputColumnName">The series column read (time-major vector of Single, any length); null reads <paramref name="outputColumnName"/>.</param>
        /// <param name="channels">Values per time step.</param>
        /// <param name="numberOfFeatures">Features requested, rounded down to a multiple of 84.</param>
        /// <param name="seed">The seed of the fitted kernels; null draws one from the <see cref="MLContext"/>.</param>
        /// <returns>The MiniRocket estimator.</returns>
        public static Hazy.Sequence.MiniRocket.MiniRocketEstimator MiniRocket(this TransformsCatalog catalog, string outputColumnName = DefaultColumnNames.Features,
            string? inputColumnName = null, int channels = Hazy.Sequence.MiniRocket.MiniRocketEstimator.Options.Defaults.Channels,
            int numberOfFeatures = Hazy.Sequence.MiniRocket.MiniRocketEstimator.Options.Defaults.NumberOfFeatures, int? seed = null) =>
            catalog.MiniRocket(new Hazy.Sequence.MiniRocket.MiniRocketEstimator.Options
            {
                OutputColumnName = outputColumnName, InputColumnName = inputColumnName, Channels = channels, NumberOfFeatures = numberOfFeatures, Seed = seed,
            });

        /// <summary>A MiniRocket featurizer with all options. See <see cref="Hazy.Sequence.MiniRocket.MiniRocketEstimator"/>.</summary>
        /// <param name="catalog">The transforms catalog.</param>
        /// <param name="options">The featurizer's options.</param>
        /// <returns>The MiniRocket estimator.</returns>
        public static Hazy.Sequence.MiniRocket.MiniRocketEstimator MiniRocket(this TransformsCatalog catalog, Hazy.Sequence.MiniRocket.MiniRocketEstimator.Options options) =>
            new(HazyEnvironment.From(catalog).Env, options);
    }
}

namespace Microsoft.ML.Hazy
{
    /// <summary>
    /// The Hazy components of one <see cref="MLContext"/>, grouped by task. Later capabilities (sequence
    /// models, slicing, interpretation) hang off this catalog.
    /// </summary>
    public sealed class HazyCatalog
    {
        private readonly MLContext _mlContext;

        internal HazyCatalog(MLContext mlContext)
        {
            _mlContext = mlContext;
            Environment = HazyEnvironment.From(mlContext);
            MulticlassClassification = new TaskTrainers(Environment, PredictionKind.MulticlassClassification);
            BinaryClassification = new TaskTrainers(Environment, PredictionKind.BinaryClassification);
            Regression = new TaskTrainers(Environment, PredictionKind.Regression);
            Slicing = new SlicingCatalog(Environment);
            Interpretation = new InterpretationCatalog(Environment);
        }

        internal HazyEnvironment Environment { get; }

        /// <summary>Multiclass classifiers (key label).</summary>
        public TaskTrainers MulticlassClassification { get; }

        /// <summary>Binary classifiers (Boolean label).</summary>
        public TaskTrainers BinaryClassification { get; }

        /// <summary>Regressors (Single label).</summary>
        public TaskTrainers Regression { get; }

        /// <summary>Slice discovery (Domino).</summary>
        public SlicingCatalog Slicing { get; }

        /// <summary>Attribution methods and their evaluation.</summary>
        public InterpretationCatalog Interpretation { get; }

        /// <summary>
        /// Loads a model saved with <c>mlContext.Model.Save</c>, as <c>mlContext.Model.Load</c> does; when an ONNX graph
        /// inside the file does not load, the exception names the file and the zip entry that holds the graph.
        /// </summary>
        /// <param name="filePath">The model file (a zip written by <c>mlContext.Model.Save</c>).</param>
        /// <param name="inputSchema">The input schema the model was saved with.</param>
        /// <returns>The loaded model.</returns>
        /// <remarks>
        /// When the file was saved with <c>mlContext.Model.SaveAtomically(model, schema, path, includeWeights: true)</c>, each Hazy model
        /// in it comes back as a <see cref="HazyPredictionTransformer"/> whose <see cref="HazyPredictionTransformer.Network"/> is read
        /// from the file when first used, so the loaded model can be attributed, streamed and trained on; it scores without TorchSharp
        /// until then. A file saved without weights loads as <c>mlContext.Model.Load</c> loads it: it scores, but has no network.
        /// </remarks>
        /// <exception cref="InvalidDataException">An ONNX graph in the file does not load; the message names the file and the entry.
        /// Or the file's weights entries are malformed.</exception>
        public ITransformer LoadModel(string filePath, out DataViewSchema inputSchema) =>
            Persistence.ModelArchive.Restore(SavedModelDiagnostics.Load(_mlContext, filePath, out inputSchema), filePath);

        /// <summary>
        /// Trains a Hazy model further on the data given to <c>Fit</c>, from its current weights; the model is not changed. See
        /// <see cref="Persistence.ContinuedTrainingEstimator"/>.
        /// </summary>
        /// <param name="model">A Hazy model, or a chain holding one, trained in this process or loaded with <see cref="LoadModel"/> from a file saved with its weights.</param>
        /// <param name="options">The training options; null trains 2 epochs at learning rate 5e-4 on the model's feature column.</param>
        /// <exception cref="NotSupportedException">The model holds no Hazy network (for example it was loaded from a file saved without weights).</exception>
        public Persistence.ContinuedTrainingEstimator ContinueTraining(ITransformer model, Persistence.ContinuedTrainingEstimator.Options? options = null) =>
            Persistence.ContinuedTrainingEstimator.Create(Environment, model, options);

        /// <summary>The trainers for one task.</summary>
        /// <remarks>
        /// A trainer appears here as two members: a short overload whose defaults are its <c>Options.Defaults</c>, and one
        /// taking its options. The ML.NET catalog extensions (<see cref="HazyTrainersCatalogExtensions"/>) forward to these.
        /// </remarks>
        public sealed class TaskTrainers
        {
            private readonly HazyEnvironment _env;
            private readonly PredictionKind _kind;

            internal TaskTrainers(HazyEnvironment env, PredictionKind kind)
            {
                _env = env;
                _kind = kind;
            }

            /// <summary>A multilayer perceptron.</summary>
            /// <param name="labelColumnName">The label column.</param>
            /// <param name="featureColumnName">The feature column: a known-size vector of Single.</param>
            /// <param name="hiddenLayers">Widths of the hidden layers; null takes <see cref="MlpTrainer.Options.Defaults.HiddenLayers"/>.</param>
            /// <param name="numberOfEpochs">Passes over the data.</param>
            /// <param name="learningRate">Peak learning rate.</param>
            /// <param name="batchSize">Rows per step.</param>
            public MlpTrainer Mlp(string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int[]? hiddenLayers = null,
                int numberOfEpochs = MlpDefaults.NumberOfEpochs, double learningRate = MlpDefaults.LearningRate, int batchSize = MlpDefaults.BatchSize) =>
                Mlp(Short(new MlpTrainer.Options { HiddenLayers = hiddenLayers ?? MlpDefaults.HiddenLayers }, labelColumnName, featureColumnName, numberOfEpochs, learningRate, batchSize));

            /// <summary>A multilayer perceptron with all options.</summary>
            /// <param name="options">The trainer's options.</param>
            public MlpTrainer Mlp(MlpTrainer.Options options) => new(_env, options, _kind);

            /// <summary>
            /// Dense-to-sparse fine-tuning: projects the hidden layers of a trained Hazy MLP on Monarch matrices and
            /// fine-tunes on the data given to <c>Fit</c>. See <see cref="MonarchFineTuneTrainer"/> for an example.
            /// </summary>
            /// <param name="model">A trained Hazy MLP of this task; it is not changed.</param>
            /// <param name="monarchBlocks">Blocks of each Monarch factor.</param>
            /// <param name="numberOfEpochs">Fine-tuning epochs.</param>
            /// <param name="learningRate">Peak fine-tuning learning rate.</param>
            /// <param name="labelColumnName">The label column.</param>
            /// <param name="featureColumnName">The feature column.</param>
            public MonarchFineTuneTrainer MonarchFineTune(HazyPredictionTransformer model, int monarchBlocks = FineTuneDefaults.MonarchBlocks,
                int numberOfEpochs = FineTuneDefaults.NumberOfEpochs, double learningRate = FineTuneDefaults.LearningRate,
                string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features) =>
                MonarchFineTune(model, Short(new MonarchFineTuneTrainer.Options { MonarchBlocks = monarchBlocks },
                    labelColumnName, featureColumnName, numberOfEpochs, learningRate, FineTuneDefaults.BatchSize));

            /// <summary>Dense-to-sparse fine-tuning with all options.</summary>
            /// <param name="model">A trained Hazy MLP of this task; it is not changed.</param>
            /// <param name="options">The fine-tuning options.</param>
            public MonarchFineTuneTrainer MonarchFineTune(HazyPredictionTransformer model, MonarchFineTuneTrainer.Options options) =>
                new(_env, model, options, _kind);

            /// <summary>A convolutional network for image-shaped feature vectors.</summary>
            /// <param name="labelColumnName">The label column.</param>
            /// <param name="featureColumnName">The feature column: a vector of <paramref name="channels"/>·<paramref name="height"/>·<paramref name="width"/> Single, channel after channel, each row by row.</param>
            /// <param name="channels">Channels of the image.</param>
            /// <param name="height">Height of the image in pixels; required.</param>
            /// <param name="width">Width of the image in pixels; required.</param>
            /// <param name="numberOfEpochs">Passes over the data.</param>
            /// <param name="learningRate">Peak learning rate.</param>
            /// <param name="batchSize">Rows per step.</param>
            public CnnTrainer Cnn(string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features,
                int channels = CnnDefaults.Channels, int height = 0, int width = 0,
                int numberOfEpochs = CnnDefaults.NumberOfEpochs, double learningRate = CnnDefaults.LearningRate, int batchSize = CnnDefaults.BatchSize) =>
                Cnn(Short(new CnnTrainer.Options { Channels = channels, Height = height, Width = width }, labelColumnName, featureColumnName, numberOfEpochs, learningRate, batchSize));

            /// <summary>A convolutional network with all options.</summary>
            /// <param name="options">The trainer's options; <see cref="CnnTrainer.Options.Height"/> and <see cref="CnnTrainer.Options.Width"/> must be set.</param>
            public CnnTrainer Cnn(CnnTrainer.Options options) => new(_env, options, _kind);

            /// <summary>An S4D sequence model (diagonal state-space layers).</summary>
            /// <param name="labelColumnName">The label column.</param>
            /// <param name="featureColumnName">The sequence column: a vector of Single, time-major steps of <paramref name="channels"/> values (variable size for sequences of different lengths).</param>
            /// <param name="channels">Values per time step.</param>
            /// <param name="modelDimension">The model width H; 0 sizes it to the data (see <see cref="SequenceTrainer.Options"/>).</param>
            /// <param name="numberOfLayers">The number of S4D blocks; 0 sizes it to the data.</param>
            /// <param name="numberOfEpochs">Passes over the data; 0 trains the fewest epochs that take 300 optimizer steps.</param>
            /// <param name="learningRate">Peak learning rate (the state-space parameters keep their own, 1e-3).</param>
            /// <param name="batchSize">Rows per step; 0 sizes it to the data (16 below 2,000 rows).</param>
            /// <param name="maximumLength">For series of different lengths, the most time steps a row may have when the model scores it; 0 takes the longest training row.</param>
            public SequenceTrainer S4D(string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int channels = SequenceDefaults.Channels,
                int modelDimension = SequenceDefaults.ModelDimension, int numberOfLayers = SequenceDefaults.NumberOfLayers,
                int numberOfEpochs = SequenceDefaults.NumberOfEpochs, double learningRate = SequenceDefaults.LearningRate, int batchSize = SequenceDefaults.BatchSize, int maximumLength = 0) =>
                S4D(Short(new SequenceTrainer.Options { Channels = channels, ModelDimension = modelDimension, NumberOfLayers = numberOfLayers, MaximumLength = maximumLength },
                    labelColumnName, featureColumnName, numberOfEpochs, learningRate, batchSize));

            /// <summary>An S4D sequence model with all options.</summary>
            /// <param name="options">The trainer's options; <see cref="SequenceTrainer.Options.Backbone"/> must be <see cref="SequenceBackbone.S4D"/>.</param>
            public SequenceTrainer S4D(SequenceTrainer.Options options) => Sequence(RequireBackbone(options, SequenceBackbone.S4D));

            /// <summary>A sequence model with the backbone chosen by <see cref="SequenceTrainer.Options.Backbone"/>.</summary>
            /// <param name="options">The trainer's options.</param>
            public SequenceTrainer Sequence(SequenceTrainer.Options options) => new(_env, options, _kind);
        }

        /// <summary>Sets the options every short overload takes on <paramref name="options"/>.</summary>
        private static TOptions Short<TOptions>(TOptions options, string label, string features, int epochs, double learningRate, int batchSize)
            where TOptions : HazyTrainerOptions
        {
            options.LabelColumnName = label;
            options.FeatureColumnName = features;
            options.NumberOfEpochs = epochs;
            options.LearningRate = learningRate;
            options.BatchSize = batchSize;
            return options;
        }

        internal static SequenceTrainer.Options RequireBackbone(SequenceTrainer.Options options, SequenceBackbone backbone)
        {
            ArgumentNullException.ThrowIfNull(options);
            if (options.Backbone != backbone)
                throw new ArgumentException($"Options.Backbone is {options.Backbone} but this catalog method builds {backbone} models; use HazySequence / Sequence(options) for any backbone.", nameof(options));
            return options;
        }

        /// <summary>
        /// A supervised embedding: an MLP encoder trained through a linear classifier of the key label (dropped at export) that
        /// outputs an <c>Embedding</c> vector column of <paramref name="embeddingSize"/> values. See <see cref="EmbeddingTrainer"/>.
        /// </summary>
        /// <param name="labelColumnName">The key label column (read in training only).</param>
        /// <param name="featureColumnName">The feature column: a known-size vector of Single.</param>
        /// <param name="embeddingSize">Values per embedding.</param>
        /// <param name="normalize">Scale each embedding to unit L2 norm.</param>
        /// <param name="outputColumnName">The embedding column.</param>
        public EmbeddingTrainer Embedding(string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features,
            int embeddingSize = EmbeddingTrainer.Options.Defaults.EmbeddingSize, bool normalize = EmbeddingTrainer.Options.Defaults.Normalize, string outputColumnName = DefaultColumnNames.Embedding) =>
            new(Environment, new EmbeddingTrainer.Options { LabelColumnName = labelColumnName, FeatureColumnName = featureColumnName, EmbeddingSize = embeddingSize, Normalize = normalize, OutputColumnName = outputColumnName });

        /// <summary>A supervised embedding with all options; see <see cref="EmbeddingTrainer"/>.</summary>
        /// <param name="options">The trainer's options.</param>
        public EmbeddingTrainer Embedding(EmbeddingTrainer.Options options) => new(Environment, options);

        /// <summary>
        /// A contrastive embedding ("Perfectly Balanced", Chen et al. 2022): an encoder trained with SupCon + class-conditional
        /// InfoNCE (α = 0.5) on two random views and the classifier's cross-entropy, outputting an <c>Embedding</c> vector
        /// column. See <see cref="ContrastiveTrainer"/>; the options overload chooses the loss, the encoder and the autoencoder.
        /// </summary>
        /// <param name="labelColumnName">The key label column (read in training only).</param>
        /// <param name="featureColumnName">The feature column: a known-size vector of Single.</param>
        /// <param name="embeddingSize">Values per embedding.</param>
        /// <param name="height">Height of image-shaped features (enables the views' augmentation); 0 for other features.</param>
        /// <param name="width">Width of image-shaped features; 0 for other features.</param>
        /// <param name="numberOfEpochs">Passes over the data.</param>
        public ContrastiveTrainer Contrastive(string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features,
            int embeddingSize = ContrastiveTrainer.Options.Defaults.EmbeddingSize, int height = 0, int width = 0, int numberOfEpochs = HazyTrainerOptions.Defaults.NumberOfEpochs) =>
            new(Environment, new ContrastiveTrainer.Options
            {
                LabelColumnName = labelColumnName, FeatureColumnName = featureColumnName, EmbeddingSize = embeddingSize, Height = height, Width = width, NumberOfEpochs = numberOfEpochs,
            });

        /// <summary>A contrastive embedding with all options; see <see cref="ContrastiveTrainer"/>.</summary>
        /// <param name="options">The trainer's options (presets: <c>Options.SupCon()</c>, <c>Spread()</c>, <c>Autoencoder()</c>, <c>CrossEntropy()</c>).</param>
        public ContrastiveTrainer Contrastive(ContrastiveTrainer.Options options) => new(Environment, options);

        /// <summary>
        /// "Thanos" embeddings: a SupCon + cNCE encoder and a class-conditional autoencoder trained on the same data, their
        /// embeddings concatenated into <paramref name="outputColumnName"/>. See <see cref="ThanosEstimator"/>.
        /// </summary>
        /// <param name="spread">Options of the contrastive encoder (e.g. <c>ContrastiveTrainer.Options.Spread()</c>).</param>
        /// <param name="autoencoder">Options of the autoencoder (e.g. <c>ContrastiveTrainer.Options.Autoencoder()</c>).</param>
        /// <param name="outputColumnName">The concatenated embedding column.</param>
        public ThanosEstimator Thanos(ContrastiveTrainer.Options spread, ContrastiveTrainer.Options autoencoder,
            string outputColumnName = DefaultColumnNames.Embedding) => new(Environment, spread, autoencoder, outputColumnName);

        /// <summary>
        /// A classifier's accuracy in each group of rows and its worst-group accuracy (the metric group DRO,
        /// <see cref="Robustness.GroupDroOptions"/>, improves). See <see cref="Robustness.GroupMetrics"/>.
        /// </summary>
        /// <param name="scored">Data scored by the model: the group, the label and the predicted label per row.</param>
        /// <param name="groupColumnName">The group column: a key.</param>
        /// <param name="labelColumnName">The label column: a key (multiclass) or Boolean (binary).</param>
        /// <param name="predictedLabelColumnName">The predicted label column, of the label's type.</param>
        public Robustness.GroupMetrics EvaluateGroups(IDataView scored, string groupColumnName = Robustness.GroupDroOptions.Defaults.GroupColumnName,
            string labelColumnName = DefaultColumnNames.Label, string predictedLabelColumnName = DefaultColumnNames.PredictedLabel) =>
            Robustness.GroupMetrics.Evaluate(scored, groupColumnName, labelColumnName, predictedLabelColumnName);
    }
}

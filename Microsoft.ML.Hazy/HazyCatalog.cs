using Microsoft.ML.Hazy;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Training;

namespace Microsoft.ML
{
    /// <summary>Entry point to Hazy components: <c>mlContext.Hazy()</c>.</summary>
    public static class HazyMLContextExtensions
    {
        /// <summary>The Hazy catalog of this context; its components use the context's seed, log and GPU settings.</summary>
        public static HazyCatalog Hazy(this MLContext mlContext) => new(mlContext);
    }

    /// <summary>Hazy trainers as extensions of ML.NET's trainer catalogs.</summary>
    public static class HazyTrainersCatalogExtensions
    {
        /// <summary>A multilayer-perceptron multiclass classifier trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="labelColumnName">The label column: a key type.</param>
        /// <param name="featureColumnName">The feature column: a known-size vector of Single.</param>
        /// <param name="hiddenLayers">Widths of the hidden layers; default 256 and 128.</param>
        /// <param name="numberOfEpochs">Passes over the data.</param>
        /// <param name="learningRate">Peak learning rate.</param>
        /// <param name="batchSize">Rows per step.</param>
        public static MlpTrainer HazyMlp(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features,
            int[]? hiddenLayers = null, int numberOfEpochs = 10, double learningRate = 1e-3, int batchSize = 64) =>
            new(HazyEnvironment.From((object)catalog), HazyCatalog.MakeOptions(labelColumnName, featureColumnName, hiddenLayers, numberOfEpochs, learningRate, batchSize),
                PredictionKind.MulticlassClassification);

        /// <summary>A multilayer-perceptron multiclass classifier with all options.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static MlpTrainer HazyMlp(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, MlpTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), options, PredictionKind.MulticlassClassification);

        /// <summary>A multilayer-perceptron binary classifier trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="labelColumnName">The label column: Boolean.</param>
        /// <param name="featureColumnName">The feature column: a known-size vector of Single.</param>
        /// <param name="hiddenLayers">Widths of the hidden layers; default 256 and 128.</param>
        /// <param name="numberOfEpochs">Passes over the data.</param>
        /// <param name="learningRate">Peak learning rate.</param>
        /// <param name="batchSize">Rows per step.</param>
        public static MlpTrainer HazyMlp(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features,
            int[]? hiddenLayers = null, int numberOfEpochs = 10, double learningRate = 1e-3, int batchSize = 64) =>
            new(HazyEnvironment.From((object)catalog), HazyCatalog.MakeOptions(labelColumnName, featureColumnName, hiddenLayers, numberOfEpochs, learningRate, batchSize),
                PredictionKind.BinaryClassification);

        /// <summary>A multilayer-perceptron binary classifier with all options.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static MlpTrainer HazyMlp(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, MlpTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), options, PredictionKind.BinaryClassification);

        /// <summary>A multilayer-perceptron regressor trained with TorchSharp and served through ONNX.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="labelColumnName">The label column: Single.</param>
        /// <param name="featureColumnName">The feature column: a known-size vector of Single.</param>
        /// <param name="hiddenLayers">Widths of the hidden layers; default 256 and 128.</param>
        /// <param name="numberOfEpochs">Passes over the data.</param>
        /// <param name="learningRate">Peak learning rate.</param>
        /// <param name="batchSize">Rows per step.</param>
        public static MlpTrainer HazyMlp(this RegressionCatalog.RegressionTrainers catalog,
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features,
            int[]? hiddenLayers = null, int numberOfEpochs = 10, double learningRate = 1e-3, int batchSize = 64) =>
            new(HazyEnvironment.From((object)catalog), HazyCatalog.MakeOptions(labelColumnName, featureColumnName, hiddenLayers, numberOfEpochs, learningRate, batchSize),
                PredictionKind.Regression);

        /// <summary>A multilayer-perceptron regressor with all options.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static MlpTrainer HazyMlp(this RegressionCatalog.RegressionTrainers catalog, MlpTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), options, PredictionKind.Regression);

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
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features,
            int channels = 1, int height = 0, int width = 0, int numberOfEpochs = 10, double learningRate = 2e-3, int batchSize = 64) =>
            new(HazyEnvironment.From((object)catalog),
                HazyCatalog.MakeCnnOptions(labelColumnName, featureColumnName, channels, height, width, numberOfEpochs, learningRate, batchSize),
                PredictionKind.MulticlassClassification);

        /// <summary>A convolutional multiclass classifier with all options.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="CnnTrainer.Options.Height"/> and <see cref="CnnTrainer.Options.Width"/> must be set.</param>
        public static CnnTrainer HazyCnn(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, CnnTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), options, PredictionKind.MulticlassClassification);

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
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features,
            int channels = 1, int height = 0, int width = 0, int numberOfEpochs = 10, double learningRate = 2e-3, int batchSize = 64) =>
            new(HazyEnvironment.From((object)catalog),
                HazyCatalog.MakeCnnOptions(labelColumnName, featureColumnName, channels, height, width, numberOfEpochs, learningRate, batchSize),
                PredictionKind.BinaryClassification);

        /// <summary>A convolutional binary classifier with all options.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="CnnTrainer.Options.Height"/> and <see cref="CnnTrainer.Options.Width"/> must be set.</param>
        public static CnnTrainer HazyCnn(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, CnnTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), options, PredictionKind.BinaryClassification);

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
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features,
            int channels = 1, int height = 0, int width = 0, int numberOfEpochs = 10, double learningRate = 2e-3, int batchSize = 64) =>
            new(HazyEnvironment.From((object)catalog),
                HazyCatalog.MakeCnnOptions(labelColumnName, featureColumnName, channels, height, width, numberOfEpochs, learningRate, batchSize),
                PredictionKind.Regression);

        /// <summary>A convolutional regressor with all options.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="CnnTrainer.Options.Height"/> and <see cref="CnnTrainer.Options.Width"/> must be set.</param>
        public static CnnTrainer HazyCnn(this RegressionCatalog.RegressionTrainers catalog, CnnTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), options, PredictionKind.Regression);

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
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int channels = 1,
            int modelDimension = 0, int numberOfLayers = 0, int numberOfEpochs = 0, double learningRate = 1e-2, int batchSize = 0, int maximumLength = 0) =>
            new(HazyEnvironment.From((object)catalog),
                HazyCatalog.MakeSequenceOptions(labelColumnName, featureColumnName, channels, modelDimension, numberOfLayers, numberOfEpochs, learningRate, batchSize, maximumLength),
                PredictionKind.MulticlassClassification);

        /// <summary>An S4D sequence multiclass classifier with all options.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="SequenceTrainer.Options.Backbone"/> must be <see cref="SequenceBackbone.S4D"/>.</param>
        public static SequenceTrainer HazyS4D(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, SequenceTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), HazyCatalog.RequireBackbone(options, SequenceBackbone.S4D), PredictionKind.MulticlassClassification);

        /// <summary>A sequence multiclass classifier with the backbone chosen by <see cref="SequenceTrainer.Options.Backbone"/>.</summary>
        /// <param name="catalog">The multiclass trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static SequenceTrainer HazySequence(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, SequenceTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), options, PredictionKind.MulticlassClassification);

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
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int channels = 1,
            int modelDimension = 0, int numberOfLayers = 0, int numberOfEpochs = 0, double learningRate = 1e-2, int batchSize = 0, int maximumLength = 0) =>
            new(HazyEnvironment.From((object)catalog),
                HazyCatalog.MakeSequenceOptions(labelColumnName, featureColumnName, channels, modelDimension, numberOfLayers, numberOfEpochs, learningRate, batchSize, maximumLength),
                PredictionKind.BinaryClassification);

        /// <summary>An S4D sequence binary classifier with all options.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="SequenceTrainer.Options.Backbone"/> must be <see cref="SequenceBackbone.S4D"/>.</param>
        public static SequenceTrainer HazyS4D(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, SequenceTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), HazyCatalog.RequireBackbone(options, SequenceBackbone.S4D), PredictionKind.BinaryClassification);

        /// <summary>A sequence binary classifier with the backbone chosen by <see cref="SequenceTrainer.Options.Backbone"/>.</summary>
        /// <param name="catalog">The binary trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static SequenceTrainer HazySequence(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, SequenceTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), options, PredictionKind.BinaryClassification);

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
            string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int channels = 1,
            int modelDimension = 0, int numberOfLayers = 0, int numberOfEpochs = 0, double learningRate = 1e-2, int batchSize = 0, int maximumLength = 0) =>
            new(HazyEnvironment.From((object)catalog),
                HazyCatalog.MakeSequenceOptions(labelColumnName, featureColumnName, channels, modelDimension, numberOfLayers, numberOfEpochs, learningRate, batchSize, maximumLength),
                PredictionKind.Regression);

        /// <summary>An S4D sequence regressor with all options.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="options">The trainer's options; <see cref="SequenceTrainer.Options.Backbone"/> must be <see cref="SequenceBackbone.S4D"/>.</param>
        public static SequenceTrainer HazyS4D(this RegressionCatalog.RegressionTrainers catalog, SequenceTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), HazyCatalog.RequireBackbone(options, SequenceBackbone.S4D), PredictionKind.Regression);

        /// <summary>A sequence regressor with the backbone chosen by <see cref="SequenceTrainer.Options.Backbone"/>.</summary>
        /// <param name="catalog">The regression trainers catalog.</param>
        /// <param name="options">The trainer's options.</param>
        public static SequenceTrainer HazySequence(this RegressionCatalog.RegressionTrainers catalog, SequenceTrainer.Options options) =>
            new(HazyEnvironment.From((object)catalog), options, PredictionKind.Regression);
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
        /// <exception cref="InvalidDataException">An ONNX graph in the file does not load; the message names the file and the entry.</exception>
        public ITransformer LoadModel(string filePath, out DataViewSchema inputSchema) =>
            SavedModelDiagnostics.Load(_mlContext, filePath, out inputSchema);

        /// <summary>The trainers for one task.</summary>
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
            /// <param name="hiddenLayers">Widths of the hidden layers; default 256 and 128.</param>
            /// <param name="numberOfEpochs">Passes over the data.</param>
            /// <param name="learningRate">Peak learning rate.</param>
            /// <param name="batchSize">Rows per step.</param>
            public MlpTrainer Mlp(string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features,
                int[]? hiddenLayers = null, int numberOfEpochs = 10, double learningRate = 1e-3, int batchSize = 64) =>
                new(_env, MakeOptions(labelColumnName, featureColumnName, hiddenLayers, numberOfEpochs, learningRate, batchSize), _kind);

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
            public MonarchFineTuneTrainer MonarchFineTune(HazyPredictionTransformer model, int monarchBlocks = 4, int numberOfEpochs = 2, double learningRate = 5e-4,
                string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features) =>
                new(_env, model, new MonarchFineTuneTrainer.Options
                {
                    MonarchBlocks = monarchBlocks,
                    NumberOfEpochs = numberOfEpochs,
                    LearningRate = learningRate,
                    LabelColumnName = labelColumnName,
                    FeatureColumnName = featureColumnName,
                }, _kind);

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
                int channels = 1, int height = 0, int width = 0, int numberOfEpochs = 10, double learningRate = 2e-3, int batchSize = 64) =>
                new(_env, MakeCnnOptions(labelColumnName, featureColumnName, channels, height, width, numberOfEpochs, learningRate, batchSize), _kind);

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
            public SequenceTrainer S4D(string labelColumnName = DefaultColumnNames.Label, string featureColumnName = DefaultColumnNames.Features, int channels = 1,
                int modelDimension = 0, int numberOfLayers = 0, int numberOfEpochs = 0, double learningRate = 1e-2, int batchSize = 0, int maximumLength = 0) =>
                new(_env, MakeSequenceOptions(labelColumnName, featureColumnName, channels, modelDimension, numberOfLayers, numberOfEpochs, learningRate, batchSize, maximumLength), _kind);

            /// <summary>An S4D sequence model with all options.</summary>
            /// <param name="options">The trainer's options; <see cref="SequenceTrainer.Options.Backbone"/> must be <see cref="SequenceBackbone.S4D"/>.</param>
            public SequenceTrainer S4D(SequenceTrainer.Options options) => new(_env, RequireBackbone(options, SequenceBackbone.S4D), _kind);

            /// <summary>A sequence model with the backbone chosen by <see cref="SequenceTrainer.Options.Backbone"/>.</summary>
            /// <param name="options">The trainer's options.</param>
            public SequenceTrainer Sequence(SequenceTrainer.Options options) => new(_env, options, _kind);
        }

        internal static CnnTrainer.Options MakeCnnOptions(string label, string features, int channels, int height, int width, int epochs, double lr, int batchSize) => new()
        {
            LabelColumnName = label,
            FeatureColumnName = features,
            Channels = channels,
            Height = height,
            Width = width,
            NumberOfEpochs = epochs,
            LearningRate = lr,
            BatchSize = batchSize,
        };

        internal static SequenceTrainer.Options MakeSequenceOptions(string label, string features, int channels, int width, int layers, int epochs, double lr, int batchSize, int maximumLength) => new()
        {
            MaximumLength = maximumLength,
            LabelColumnName = label,
            FeatureColumnName = features,
            Channels = channels,
            ModelDimension = width,
            NumberOfLayers = layers,
            NumberOfEpochs = epochs,
            LearningRate = lr,
            BatchSize = batchSize,
        };

        internal static SequenceTrainer.Options RequireBackbone(SequenceTrainer.Options options, SequenceBackbone backbone)
        {
            ArgumentNullException.ThrowIfNull(options);
            if (options.Backbone != backbone)
                throw new ArgumentException($"Options.Backbone is {options.Backbone} but this catalog method builds {backbone} models; use HazySequence / Sequence(options) for any backbone.", nameof(options));
            return options;
        }

        internal static MlpTrainer.Options MakeOptions(string label, string features, int[]? hidden, int epochs, double lr, int batchSize)
        {
            var o = new MlpTrainer.Options
            {
                LabelColumnName = label,
                FeatureColumnName = features,
                NumberOfEpochs = epochs,
                LearningRate = lr,
                BatchSize = batchSize,
            };
            if (hidden != null)
                o.HiddenLayers = hidden;
            return o;
        }
    }
}

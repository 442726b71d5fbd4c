from pea_keras.tflite.cli import main

main()
